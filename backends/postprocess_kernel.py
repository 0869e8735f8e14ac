"""RF-DETR outputs -> detections with COCO RLE masks and polygons: the kernel path.

Same results as backends.postprocess.postprocess_batch (the reference), computed without a dense
full-size mask anywhere:
1. torch's sigmoid of the class logits (bit-identical scores), then backends.select_kernel:
   top num_select, threshold, class-name rule and boxes for the whole batch in one launch;
2. backends.mask_region_kernel: the batch's detection table, and where each mask can be > 0;
3. backends.rle_kernel: every mask's run boundaries in COCO order, from its low-res logits;
4. only the detection rows and the run boundaries cross to the host (pinned buffers, after one
   small summary copy that sizes them); there backends.rle_runs turns them into COCO compressed
   counts for the whole batch at once and, per mask, the largest contour of its tight crop.

launch_postprocess() queues the device work and returns at once; PendingPostprocess.results()
waits for it and does the host part, so a caller can overlap the host part of one batch with the
device work of the next. postprocess_batch_kernels() is both, with postprocess_batch's signature.
On CPU tensors the kernels run only under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from backends.classes import ClassTable
from backends.mask_region_kernel import (
    DET_BOX,
    DET_CLASS,
    DET_FRAME,
    DET_SCORE,
    Frames,
    MaskRegions,
    mask_regions,
)
from backends.postprocess_settings import PostprocessSettings
from backends.results import EMPTY_POLYGON, SegmentationResult
from backends.rle_kernel import MaskToggles, mask_toggles
from backends.rle_runs import (
    coco_counts,
    compress_counts,
    largest_contours_from_runs,
    merge_column_joins,
    split_strings,
)
from backends.select_kernel import select_detections_batch


@lru_cache(maxsize=32)
def class_name_flags(classes: ClassTable, num_classes: int, device: torch.device) -> torch.Tensor:
    """(C,) int8 on the device: 1 where class id c has a name (backends.classes' rule)."""
    return torch.from_numpy(classes.named(np.arange(num_classes)).astype(np.int8)).to(device)


@dataclass
class HostDetections:
    """A batch's kept detections on the host, frame after frame."""

    counts: np.ndarray  # (B,) detections per frame
    frames: np.ndarray  # (N,) frame of each detection
    class_ids: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    toggles: np.ndarray  # every detection's toggles (backends.rle_kernel), concatenated
    toggle_ends: np.ndarray  # (N,) inclusive cumulative toggle counts
    device_to_host_bytes: int  # what crossed from the device for this batch


class PendingPostprocess:
    """One batch's device work, queued; results() waits for it and finishes on the host."""

    def __init__(
        self,
        masks: torch.Tensor,
        frames: Frames,
        regions: MaskRegions,
        toggles: MaskToggles,
        settings: PostprocessSettings,
        toggle_blocks: tuple[int, int] | None = None,
    ):
        self._masks, self._frames, self._regions, self._toggles = masks, frames, regions, toggles
        self._settings, self._toggle_blocks = settings, toggle_blocks
        batch = len(frames.image_sizes)
        last_end = toggles.ends[-1:] if len(toggles.ends) else torch.zeros(1, dtype=torch.int32, device=masks.device)
        summary = torch.cat([regions.counts, last_end])
        self._summary = _to_host(summary)
        self._summary_bytes = 4 * (batch + 1)
        self._event = torch.cuda.Event() if masks.device.type == "cuda" else None
        if self._event is not None:
            self._event.record()

    def fetch(self) -> HostDetections:
        """Waits for the device, then copies only the used rows and toggles (one more wait)."""
        if self._event is not None:
            self._event.synchronize()
        summary = self._summary.numpy()
        counts = summary[:-1].astype(np.int64)
        num_rows, num_toggles = int(counts.sum()), int(summary[-1])
        toggles = self._toggles
        if num_toggles > toggles.capacity:  # more than the default room: the exact room, again
            toggles = mask_toggles(
                self._masks, self._regions, self._frames, capacity=num_toggles, blocks=self._toggle_blocks
            )
        table = _to_host(self._regions.table[:num_rows])
        ends = _to_host(toggles.ends[:num_rows])
        runs = _to_host(toggles.toggles[:num_toggles])
        if self._event is not None:
            torch.cuda.current_stream().synchronize()
        table, runs = table.numpy(), runs.numpy()
        return HostDetections(
            counts=counts,
            frames=table[:, DET_FRAME].astype(np.int64),
            class_ids=table[:, DET_CLASS].copy(),
            scores=table[:, DET_SCORE].view(np.float32).copy(),
            boxes=table[:, DET_BOX : DET_BOX + 4].view(np.float32).copy(),
            toggles=runs.astype(np.int64),
            toggle_ends=ends.numpy().astype(np.int64),
            device_to_host_bytes=self._summary_bytes + 4 * (table.size + num_rows + num_toggles),
        )

    def results(self) -> list[SegmentationResult]:
        """The batch's results (every polygon empty, the work skipped, without settings.polygons)."""
        return results_from_host(self.fetch(), self._frames.image_sizes, self._settings)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of the tensor on the host, queued (pinned memory) when it is on a GPU."""
    if tensor.device.type != "cuda":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def launch_postprocess(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
    *,
    toggle_capacity: int | None = None,
    toggle_blocks: tuple[int, int] | None = None,
) -> PendingPostprocess:
    """Queues a batch's device work (see the module docstring); returns without waiting.

    Args:
        dets: (B, Q, 4) float32 normalized cxcywh boxes.
        labels: (B, Q, C) float32 class logits.
        masks: (B, Q, h, w) float32 mask logits.
        image_sizes: each frame's (height, width).
        settings: top-k size, threshold and class table.
        toggle_capacity: room for run boundaries (backends.rle_kernel.mask_toggles).
        toggle_blocks: the RLE kernel's tile (backends.rle_kernel.mask_toggles).
    """
    if labels.dim() != 3 or dets.dim() != 3 or masks.dim() != 4:
        raise ValueError(
            f"expected dets (B, Q, 4), labels (B, Q, C), masks (B, Q, h, w); got {list(dets.shape)}, "
            f"{list(labels.shape)}, {list(masks.shape)}"
        )
    if len(image_sizes) != labels.shape[0]:
        raise ValueError(f"{len(image_sizes)} image sizes for a batch of {labels.shape[0]}")
    if masks.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the postprocess kernels take CPU tensors only under TRITON_INTERPRET=1")
    frames = Frames.build(image_sizes, tuple(masks.shape[-2:]), masks.device)
    has_name = class_name_flags(settings.classes, labels.shape[2], labels.device)
    selection = select_detections_batch(
        labels.sigmoid(), dets, frames.sizes, has_name, settings.num_select, settings.score_threshold
    )
    regions = mask_regions(selection.rows, selection.counts, masks, frames)
    toggles = mask_toggles(masks, regions, frames, capacity=toggle_capacity, blocks=toggle_blocks)
    return PendingPostprocess(masks, frames, regions, toggles, settings, toggle_blocks)


def results_from_host(
    host: HostDetections,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
) -> list[SegmentationResult]:
    """Host detections -> one SegmentationResult per frame (RLE for all masks at once)."""
    sizes = np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2)
    heights = sizes[host.frames, 0]
    toggles, ends = merge_column_joins(host.toggles, host.toggle_ends)
    counts, count_ends = coco_counts(toggles, ends, heights * sizes[host.frames, 1])
    rles = split_strings(*compress_counts(counts, count_ends))
    if settings.polygons:
        outlines = largest_contours_from_runs(toggles, ends, heights)
    else:
        outlines = [EMPTY_POLYGON] * len(ends)
    frame_ends = np.cumsum(host.counts)
    results = []
    for frame, (height, width) in enumerate(image_sizes):
        rows = slice(int(frame_ends[frame] - host.counts[frame]), int(frame_ends[frame]))
        class_ids = host.class_ids[rows]
        results.append(
            SegmentationResult(
                image_size=(int(height), int(width)),
                boxes=host.boxes[rows],
                scores=host.scores[rows],
                class_ids=class_ids.astype(np.int32),
                class_names=settings.classes.names_of(class_ids),
                rle_counts=rles[rows],
                polygons=outlines[rows],
            )
        )
    return results


def postprocess_batch_kernels(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
) -> list[SegmentationResult]:
    """backends.postprocess.postprocess_batch on the kernels: same arguments, same results."""
    if labels.shape[0] == 0:
        return []
    return launch_postprocess(dets, labels, masks, image_sizes, settings).results()
