"""Synthetic inputs that run a GPU stage once at load, before any request.

Triton-lang kernels compile (or load from triton's disk cache) per shape variant, in every model
instance; without this the first real batches of each size wait seconds for it (seen on the
H200: 91 ms per postprocess request at depth 4 against 18 ms in steady state,
benchmarks/results/h200/pipeline-two-postprocess-instances.md). The postprocess's single-frame
runs also capture its CUDA graphs for these frame sizes (backends.postprocess_graph).
"""

from __future__ import annotations

import torch

# (height, width): the size most cameras send, and a small one. Frame sizes choose some compiled
# variants: the COCO strings' characters per count (4 below 2**19 pixels, 5 from 720p to 4K) and
# the PIL resize's taps. Without both sizes, a 640x360 stream waited on the H200 for compiles in
# every postprocess instance (210 ms a request on average over its first 60 frames).
WARM_UP_FRAMES = ((1080, 1920), (360, 640))


def synthetic_frames(batch: int, size: tuple[int, int], device: torch.device) -> list[torch.Tensor]:
    """`batch` random BGR uint8 frames of `size` (height, width) on `device`."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=generator).to(device) for _ in range(batch)]


def synthetic_engine_outputs(
    batch: int, num_queries: int, num_classes: int, mask_size: int, confident: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Engine-shaped (dets, labels, masks) with `confident` queries per frame scoring high and
    carrying a blob mask, so selection, regions and runs all have work."""
    generator = torch.Generator().manual_seed(0)
    dets = torch.rand((batch, num_queries, 4), generator=generator) * 0.5 + 0.25
    labels = torch.full((batch, num_queries, num_classes), -8.0)
    labels[:, :confident, 1] = 4.0
    side = torch.linspace(-1.0, 1.0, mask_size)
    blob = 4.0 * (0.5 - side[None, :] ** 2 - side[:, None] ** 2)
    masks = torch.full((batch, num_queries, mask_size, mask_size), -4.0)
    masks[:, :confident] = blob
    return dets.to(device), labels.to(device), masks.to(device)
