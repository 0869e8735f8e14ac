"""Frames -> engine input: the reference preprocess of RF-DETR's predict(), on any device.

rfdetr's predict() does to_tensor (RGB, /255) -> torchvision resize to RxR, bilinear with
antialias=False (half-pixel centres, the same resize training's augmentation used, rfdetr
issue #1203) -> normalize with the ImageNet mean/std. This is that, from BGR uint8 frames,
in torch ops on whatever device the frames are (the GPU baseline). The fused Triton-lang kernel
(backends.preprocess_kernel, impl "triton") is checked against this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from backends.contract import MEANS, STDS
from backends.frames import check_frame
from backends.host_upload import upload


def preprocess_frame(image_bgr: torch.Tensor, resolution: int) -> torch.Tensor:
    """One BGR uint8 frame -> float32 (1, 3, resolution, resolution), normalized RGB.

    Args:
        image_bgr: (H, W, 3) uint8, BGR channel order (what OpenCV decodes), any device.
        resolution: the model's square input size.
    """
    check_frame(image_bgr.shape, image_bgr.dtype)
    chw = image_bgr.flip(-1).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
    resized = F.interpolate(chw, size=(resolution, resolution), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEANS, device=resized.device).view(1, 3, 1, 1)
    std = torch.tensor(STDS, device=resized.device).view(1, 3, 1, 1)
    return resized.sub(mean).div(std)


def preprocess_batch(frames: list[torch.Tensor], resolution: int, device: torch.device) -> torch.Tensor:
    """Frames of any sizes -> float32 (B, 3, resolution, resolution) on `device`."""
    out = torch.empty((len(frames), 3, resolution, resolution), dtype=torch.float32, device=device)
    for row, frame in zip(out, frames):
        row.copy_(preprocess_frame(upload(frame, device), resolution)[0])
    return out


def preprocess_batch_kernel(frames: list[torch.Tensor], resolution: int, device: torch.device) -> torch.Tensor:
    """preprocess_batch by the fused Triton-lang kernel: one launch for the whole batch
    (backends.preprocess_kernel), the frames uploaded to `device` first where they are not."""
    # Imported here: triton is needed only where this impl is served.
    from backends.preprocess_kernel import preprocess_frames

    return preprocess_frames([upload(frame, device) for frame in frames], resolution)


# The preprocess model's `impl` parameter picks one of these.
PREPROCESS_IMPLS = {"reference": preprocess_batch, "triton": preprocess_batch_kernel}
