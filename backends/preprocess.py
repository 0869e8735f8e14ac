"""Frame -> engine input: the reference preprocess of RF-DETR's predict().

rfdetr's predict() does to_tensor (RGB, /255) -> torchvision resize to RxR, bilinear with
antialias=False (half-pixel centres, the same resize training's augmentation used, rfdetr
issue #1203) -> normalize with the ImageNet mean/std. This is that, from a BGR uint8 frame.
The Triton-lang kernel that fuses it (roadmap) is checked against this function.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from backends.contract import MEANS, STDS
from backends.triton_model import InvalidRequestError


class InvalidImageError(InvalidRequestError):
    """The frame cannot be preprocessed; the message names the problem."""


def validate_image(image: np.ndarray) -> None:
    """Raises InvalidImageError unless `image` is a non-empty uint8 HxWx3 array."""
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"image must be HxWx3 (BGR), got shape {list(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"image is empty: {image.shape[0]}x{image.shape[1]} pixels")


def preprocess_reference(image_bgr: np.ndarray, resolution: int) -> np.ndarray:
    """One BGR uint8 frame -> float32 [1, 3, resolution, resolution], normalized RGB.

    Args:
        image_bgr: (H, W, 3) uint8, BGR channel order (what OpenCV decodes).
        resolution: the model's square input size.
    """
    validate_image(image_bgr)
    rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    chw = rgb.permute(2, 0, 1).float().div(255.0).unsqueeze(0)
    resized = F.interpolate(chw, size=(resolution, resolution), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEANS).view(1, 3, 1, 1)
    std = torch.tensor(STDS).view(1, 3, 1, 1)
    return resized.sub(mean).div(std).numpy()
