"""Video decoding on the GPU with NVDEC, through NVIDIA's PyNvVideoCodec: `--decoder nvdec`, with
`--transport cuda` only. Optional: `pip install PyNvVideoCodec cupy-cuda13x` (cupy-cuda12x on
CUDA 12). clients.video imports this module only when nvdec is chosen, and this module imports
PyNvVideoCodec and CuPy only when called, so the clients import without them (and without torch).

The frames never visit the host. PyNvVideoCodec's SimpleDecoder decodes each frame on NVDEC and
converts it on the GPU to interleaved RGB, H x W x 3 uint8 (output_color_type RGB); CuPy takes
that frame without a copy through DLPack and writes its channels reversed into a new C-contiguous
array on the same GPU: BGR, the ensemble's input order (backends.contract). That array is what
clients.transports.CudaShmTransport copies, device to device, into the stream's CUDA
shared-memory slot; the other transports would need the frame on the host, hence cuda only.

Why CuPy: PyNvVideoCodec offers NATIVE (NV12, YUV444...), RGB (interleaved) and RGBP (planar)
output, no BGR, so the channel swap needs an array library on the device; torch is one the clients
must not need (tests/clients/test_torch_free.py), and CuPy is the other one PyNvVideoCodec's guide
shows taking its frames (cp.from_dlpack(frame)). The swap's copy is needed anyway: a frame from
SimpleDecoder.get_batch_frames is a decoder surface, given back to the decoder at the next call
(SeekUtils::GetFramesByIdxList starts with UnlockFrames()), while a stream keeps up to --depth
frames in flight. Synchronisation is DLPack's: the frame's __dlpack__(stream) makes CuPy's stream
wait for the decoder's event (ExternalBuffer::dlpack), and tritonclient passes its own stream when
it copies CuPy's array into the slot.

Files only: SimpleDecoder needs a seekable container (mp4, mkv, avi, mov...), so no stream URLs;
webcams are read by OpenCV whatever the decoder. GPU 0, where CudaShmTransport puts its slots.
NVDEC decodes H.264, HEVC, VP9, MPEG-4 Part 2 (the sample video's mp4v) and more on Turing, A100
and Hopper; AV1 from Ampere GA10x and Ada on.

Written against (PyNvVideoCodec 2.x):
- API reference, SimpleDecoder (constructor gpu_id, use_device_memory, output_color_type;
  get_batch_frames, get_stream_metadata):
  https://docs.nvidia.com/video-technologies/pynvvideocodec/pynvc-api-reference/index.html
- Programming guide, "SimpleDecoder" (OutputColorType.RGB: interleaved RGB, HWC) and
  "Interoperability with Deep Learning Frameworks" (DecodedFrame.__dlpack__, cp.from_dlpack):
  https://docs.nvidia.com/video-technologies/pynvvideocodec/pynvc-api-prog-guide/index.html
- PyNvVideoCodec's sources: decoders/SimpleDecoder.py (a container that reports no frames is
  refused with a bare Exception), src/SeekUtils.cpp (GetFramesByBatch: frame indices past the
  reported count are skipped; UnlockFrames), src/ExternalBuffer.cpp (__dlpack__'s stream wait).
- NVDEC's codecs per GPU generation: Video Codec SDK 13.0, NVDEC Application Note, table
  "NVDEC Hardware Capabilities":
  https://docs.nvidia.com/video-technologies/video-codec-sdk/13.0/nvdec-application-note/index.html
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from clients.video_capture import Video, VideoError

logger = logging.getLogger(__name__)

GPU = 0  # CudaShmTransport's default device_id: decode where the slots are
INSTALL = "pip install PyNvVideoCodec cupy-cuda13x (cupy-cuda12x on CUDA 12)"
# What nvdec imports, and what for (named when it is missing).
_MODULES = (("PyNvVideoCodec", "NVDEC decoding"), ("cupy", "the RGB to BGR swap on the GPU"))


def nvdec_modules() -> tuple[ModuleType, ModuleType]:
    """PyNvVideoCodec and CuPy, imported now; not cached, so that a test can make it fail.

    Raises:
        ValueError: either cannot be imported; the message names which, why, and the pip command.
    """
    modules, missing = [], []
    for name, purpose in _MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            missing.append(f"{name} for {purpose} ({error})")
    if missing:
        raise ValueError(f"decoder nvdec needs {' and '.join(missing)}: {INSTALL}")
    pynvvideocodec, cupy = modules
    return pynvvideocodec, cupy


class NvdecCapture:
    """SimpleDecoder's frames read like a cv2.VideoCapture: read() gives (True, BGR uint8 HxWx3
    CuPy array on the GPU, C-contiguous) per frame, then (False, None) at the end or at the first
    error (logged; clients.video.Video reports a file that ends short)."""

    def __init__(self, decoder: Any, cupy: ModuleType, source: str):
        self._decoder = decoder
        self._cupy = cupy
        self._source = source

    def read(self) -> tuple[bool, Any]:
        if self._decoder is None:
            return False, None
        try:
            frames = self._decoder.get_batch_frames(1)  # [] past the last frame
            if not frames:
                return False, None
            rgb = self._cupy.from_dlpack(frames[0])  # the decoder's surface, no copy
            return True, self._cupy.ascontiguousarray(rgb[..., ::-1])  # our own BGR copy
        # PyNvVideoCodec's errors (PyNvVCException...) share no base but Exception; CuPy's
        # CUDA errors neither.
        except Exception as error:  # noqa: BLE001 - logged, and the video ends there
            logger.warning("video %s: decoding stopped: %s", self._source, error)
            return False, None

    def release(self) -> None:
        # SimpleDecoder has no close(): its NVDEC session ends when the object is freed.
        self._decoder = None


def open_nvdec(source: str) -> Video:
    """Opens a video file for decoding on GPU 0 with NVDEC.

    Raises:
        VideoError: a stream URL (files only), or a file that PyNvVideoCodec cannot open: not a
            container FFmpeg reads, a codec NVDEC lacks, no frame count, no GPU or driver.
        ValueError: PyNvVideoCodec or CuPy cannot be imported (nvdec_modules).
    """
    if "://" in source:
        raise VideoError(
            f"cannot open video {source} with nvdec: it decodes files only (PyNvVideoCodec's "
            "SimpleDecoder needs a seekable container); decode stream URLs with opencv or pyav"
        )
    pynvvideocodec, cupy = nvdec_modules()
    try:
        decoder = pynvvideocodec.SimpleDecoder(
            source,
            gpu_id=GPU,
            use_device_memory=True,
            output_color_type=pynvvideocodec.OutputColorType.RGB,
        )
        metadata = decoder.get_stream_metadata()
    except Exception as error:  # SimpleDecoder raises a bare Exception too
        raise VideoError(
            f"cannot open video {source}: not a video NVDEC can decode on GPU {GPU}, or no GPU "
            f"or driver for it ({error})"
        ) from error
    return Video(
        source,
        NvdecCapture(decoder, cupy, source),
        float(metadata.average_fps),
        max(int(metadata.num_frames), 0),
    )
