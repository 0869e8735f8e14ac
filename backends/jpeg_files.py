"""What a JPEG file must be, and how clients write one: numpy and OpenCV only, so the clients
(torch-free) and the server's decoders (backends.jpeg_decode) share it.

A client on another host pays for every byte of a request: a raw 1080p frame is 6.2 MB, the same
frame as a JPEG file of quality JPEG_QUALITY a few hundred kB. `encode_jpeg` writes the files the
JPEG transport sends (and the benchmarks and warm-ups send as it does); `jpeg_frame_size` reads
a file's header before any decoder runs, so a file that is no JPEG, is truncated, lacks what both
decoders need or claims a frame larger than MAX_SIDE is refused by name before anything is
allocated for it.
"""

from __future__ import annotations

import cv2
import numpy as np

from backends.frames import InvalidImageError

# The quality clients encode at: the one nvJPEG's and OpenCV's decodes were compared at
# (tests/backends/test_jpeg_decode.py), a 1080p camera frame in a few hundred kB.
JPEG_QUALITY = 90
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


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """A BGR uint8 H x W x 3 frame as a JPEG file's bytes (1-D uint8), encoded by OpenCV.

    Raises:
        ValueError: OpenCV could not encode it.
    """
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {frame.shape[1]}x{frame.shape[0]} frame as JPEG")
    return data.reshape(-1)

