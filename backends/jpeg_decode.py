"""JPEG files -> BGR uint8 frames (H x W x 3), decoded where the stage computes.

The JPEG ensemble (backends.contract.JPEG_ENSEMBLE) takes the files clients on other hosts send
(backends.jpeg_files) and decodes them in its preprocess stage, then preprocesses as the raw
ensemble does. Two decoders, chosen per target (tools.targets):

- `opencv` (the reference, any host): cv2.imdecode, i.e. libjpeg-turbo, on the host.
- `nvjpeg` (a GPU): torchvision.io.decode_jpeg on the device (nvJPEG), every frame of a batch in
  one call; the decoded RGB planes are turned into a BGR H x W x 3 view on the device.

Both ignore EXIF orientation (frames from cameras carry none, and torchvision does not apply it
on the device), and decode grayscale files to three equal channels. Their pixels differ, with no
bias: about a level on average, and rarely by much more (the sample video's 1080p frame at
quality 90 on the H200 host: mean 1.26 levels, 0.26 % of values off by more than 8, at most 76;
benchmarks/results/h200/jpeg-decode.md); tests/backends/test_jpeg_decode.py bounds that. Both
read every file's header first (backends.jpeg_files.jpeg_frame_size).
"""

from __future__ import annotations

import cv2
import torch

from backends.frames import InvalidImageError
from backends.jpeg_files import jpeg_frame_size


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
