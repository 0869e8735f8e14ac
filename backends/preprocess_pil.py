"""Frames -> engine input the way roboflow/inference serves RF-DETR: Pillow's resize.

inference's pre_processing.py flips BGR to RGB, resizes the PIL image to R x R with
torchvision's F.resize(antialias=True), which on a PIL image is Image.resize(BILINEAR) with no
reducing_gap (Pillow's separable antialiased bilinear in 22-bit fixed point, uint8 between the
two passes), then to_tensor (/255) and normalize. This is that, in Pillow and torch directly.

It is the reference of the kernel's `pil` mode (backends.preprocess_kernel) and lives here, in
backends/ beside the kernel, rather than in the tests: it is also what a CPU target would run
for a model whose accuracy was measured with this resize. Pillow comes with torchvision.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from backends.contract import MEANS, STDS
from backends.frames import check_frame


def preprocess_frame_pil(image_bgr: torch.Tensor | np.ndarray, resolution: int) -> torch.Tensor:
    """One BGR uint8 frame -> float32 (1, 3, resolution, resolution), normalized RGB, on the CPU.

    Args:
        image_bgr: (H, W, 3) uint8, BGR channel order; a tensor on any device or an array.
        resolution: the model's square input size.
    """
    check_frame(image_bgr.shape, image_bgr.dtype)
    if isinstance(image_bgr, torch.Tensor):
        image_bgr = image_bgr.cpu().numpy()
    rgb = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    resized = rgb.resize((resolution, resolution), Image.Resampling.BILINEAR, reducing_gap=None)
    chw = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float().div(255.0)  # to_tensor
    mean = torch.tensor(MEANS).view(3, 1, 1)
    std = torch.tensor(STDS).view(3, 1, 1)
    return chw.sub(mean).div(std).unsqueeze(0)  # normalize
