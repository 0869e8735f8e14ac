"""JPEG files -> BGR uint8 frames (H x W x 3), decoded where the stage computes.

A client on another host pays for every byte of a request: a raw 1080p frame is 6.2 MB, the same
frame as a JPEG of quality 90 a few hundred kB. The JPEG ensemble (backends.contract.JPEG_ENSEMBLE)
takes such files and decodes them in its preprocess stage, then preprocesses as the raw ensemble
does. Two decoders, chosen per target (tools.targets):

- `opencv` (the reference, any host): cv2.imdecode, i.e. libjpeg-turbo, on the host.
- `nvjpeg` (a GPU): torchvision.io.decode_jpeg on the device (nvJPEG), every frame of a batch in
  one call; the decoded RGB planes are turned into a BGR H x W x 3 view on the device.

Both ignore EXIF orientation (frames from cameras carry none, and torchvision does not apply it
on the device), and decode grayscale files to three equal channels. Their pixels differ, with no
bias: about a level on average, and rarely by much more (the sample video's 1080p frame at
quality 90 on the H200 host: mean 1.26 levels, 0.26 % of values off by more than 8, at most 76;
benchmarks/results/h200/jpeg-decode.md); tests/backends/test_jpeg_decode.py bounds that. Every file's header is read first, so a file that
is no JPEG, or one that claims a frame larger than MAX_SIDE, is refused by name before anything is
allocated for it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from backends.frames import InvalidImageError

# The largest frame side accepted: past 8K (7680 x 4320) with room; a header may claim 65535.
MAX_SIDE = 16384
_SOI = (0xFF, 0xD8)
# Start-of-frame markers (ITU T.81 table B.1): C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA
_DQT = 0xDB
# Markers with no length field after them: TEM, RST0-7 (a header has none of these but TEM).
_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])
_EOI = (0xFF, 0xD9)
# Zero bytes some MJPEG encoders pad a frame's file with after its end-of-image marker.
_MAX_PADDING = 4096


def jpeg_frame_size(data: np.ndarray) -> tuple[int, int]:
    """(height, width) a JPEG file's frame header declares, once the file is seen to be whole and
    its header to hold what both decoders need.

    A truncated file is refused here, not left to the decoders: OpenCV refuses one, nvJPEG
    decodes what arrived and fills the rest (seen on the H200 host), which would serve a frame
    that was never sent.

    Raises:
        InvalidImageError: the bytes are no JPEG, do not end with the end-of-image marker (a
            truncated file), end before the frame header or the scan, have no quantization
            table, or declare an empty frame or one larger than MAX_SIDE, naming which.
    """
    if data.ndim != 1 or data.dtype != np.uint8:
        raise InvalidImageError(f"a JPEG file is a 1-D uint8 tensor of its bytes, got {data.dtype} {list(data.shape)}")
    if data.size < 4 or (int(data[0]), int(data[1])) != _SOI:
        start = " ".join(f"{b:02x}" for b in data[:4].tolist())
        raise InvalidImageError(f"not a JPEG file: it starts with [{start}], not ff d8 (start of image)")
    end = data.size
    while end > 2 and data.size - end < _MAX_PADDING and data[end - 1] == 0:
        end -= 1
    if (int(data[end - 2]), int(data[end - 1])) != _EOI:
        raise InvalidImageError(f"JPEG file is truncated: its {data.size} bytes do not end with ff d9 (end of image)")
    size, quantized, at = None, False, 2
    while at + 4 <= data.size:
        if data[at] != 0xFF:
            raise InvalidImageError(f"JPEG header broken at byte {at}: {int(data[at]):02x} where a marker starts")
        marker = int(data[at + 1])
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _NO_LENGTH:
            at += 2
            continue
        if marker == _SOS:
            if size is None:
                raise InvalidImageError("JPEG has no frame header (SOF) before its scan")
            if not quantized:  # OpenCV refuses such a file, nvJPEG decodes it (H200 host)
                raise InvalidImageError("JPEG has no quantization table (DQT) before its scan")
            return size
        quantized |= marker == _DQT
        if marker in _SOF and at + 9 <= data.size:
            height = (int(data[at + 5]) << 8) | int(data[at + 6])
            width = (int(data[at + 7]) << 8) | int(data[at + 8])
            if height == 0 or width == 0:
                raise InvalidImageError(f"JPEG frame is empty: {height}x{width} pixels")
            if max(height, width) > MAX_SIDE:
                raise InvalidImageError(f"JPEG frame is {height}x{width} pixels: a side over {MAX_SIDE} is refused")
            size = height, width
        at += 2 + ((int(data[at + 2]) << 8) | int(data[at + 3]))
    header = "frame header (SOF)" if size is None else "scan (SOS)"
    raise InvalidImageError(f"JPEG file ends at byte {data.size}, before its {header}")


def decode_jpegs_opencv(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The reference: each file decoded on the host by OpenCV (libjpeg-turbo), moved to `device`."""
    frames = []
    for file in files:
        data = file.cpu().numpy()
        jpeg_frame_size(data)
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if frame is None:
            raise InvalidImageError(f"cannot decode the JPEG file ({data.size} bytes): corrupt or unsupported")
        frames.append(torch.from_numpy(frame).to(device))
    return frames


def decode_jpegs_nvjpeg(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Every file decoded on `device` (a CUDA device) by nvJPEG in one call; BGR H x W x 3 views.

    A batch that fails raises torchvision's error as it is: backends.triton_model.serve_batch then
    decodes each request alone, and a lone file that fails is the client's InvalidImageError."""
    host_files = [file.cpu() for file in files]  # nvJPEG reads the file from host memory
    for data in host_files:
        jpeg_frame_size(data.numpy())
    from torchvision.io import ImageReadMode, decode_jpeg
    try:
        images = decode_jpeg(host_files, device=device, mode=ImageReadMode.RGB)
    except RuntimeError as error:
        if len(files) > 1:
            raise
        raise InvalidImageError(f"cannot decode the JPEG file ({host_files[0].numel()} bytes): {error}") from error
    # RGB planes -> BGR: one copy with the planes reversed, then a strided H x W x 3 view (the
    # preprocess kernel reads any strides).
    return [image.flip(0).permute(1, 2, 0) for image in images]


JPEG_DECODERS = {"opencv": decode_jpegs_opencv, "nvjpeg": decode_jpegs_nvjpeg}
