"""RF-DETR outputs -> detections with COCO RLE masks and polygons: the kernel path.

Same results as backends.postprocess.postprocess_batch (the reference), computed without a dense
full-size mask anywhere:
1. torch's sigmoid of the class logits (bit-identical scores), then backends.select_kernel:
   top num_select, threshold, class-name rule and boxes for the whole batch in one launch;
2. backends.mask_region_kernel: the batch's detection table, and where each mask can be > 0;
3. backends.rle_kernel: every mask's run boundaries in COCO order, from its low-res logits;
4. backends.rle_strings_kernel: every mask's COCO compressed counts string, from its runs;
5. only the detection rows and the strings cross to the host (pinned buffers, after one small
   summary copy that sizes them), plus the run boundaries when some frame wants polygons (a
   per-frame choice: each request's, or the deployment's): there backends.rle_runs traces, per
   mask of those frames, its largest contour from the runs themselves (backends.contour_trace).

launch_postprocess() queues the device work and returns at once; PendingPostprocess.results()
waits for it and does the host part, so a caller can overlap the host part of one batch with the
device work of the next. postprocess_batch_kernels() is both, with postprocess_batch's signature.
On CPU tensors the kernels run only under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
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
from backends.packing import unpack_bytes
from backends.postprocess_settings import PostprocessSettings, frame_polygons
from backends.results import EMPTY_POLYGON, SegmentationResult
from backends.rle_kernel import MaskToggles, mask_toggles
from backends.rle_runs import TracerCrew, helpers_for, kept_crew, largest_contours_from_runs
from backends.rle_strings_kernel import CocoStrings, coco_strings
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
    rle_chars: np.ndarray  # every detection's COCO compressed counts string, concatenated, uint8
    rle_offsets: np.ndarray  # (N + 1,): detection i's string is rle_chars[rle_offsets[i]:rle_offsets[i + 1]]
    toggles: np.ndarray | None  # every detection's run boundaries (backends.rle_kernel), when a frame wants polygons
    toggle_ends: np.ndarray | None  # (N,) their inclusive cumulative counts
    device_to_host_bytes: int  # what crossed from the device for this batch


class PendingPostprocess:
    """One batch's device work, queued; results() waits for it and finishes on the host."""

    def __init__(
        self,
        masks: torch.Tensor,
        frames: Frames,
        regions: MaskRegions,
        toggles: MaskToggles,
        strings: CocoStrings,
        settings: PostprocessSettings,
        polygons: list[bool],
        toggle_blocks: tuple[int, int] | None = None,
    ):
        self._masks, self._frames, self._regions, self._toggles = masks, frames, regions, toggles
        self._strings, self._settings, self._toggle_blocks = strings, settings, toggle_blocks
        self._polygons = polygons
        batch = len(frames.image_sizes)
        last_end = toggles.ends[-1:] if len(toggles.ends) else torch.zeros(1, dtype=torch.int32, device=masks.device)
        summary = torch.cat([regions.counts, last_end, strings.total])
        self._summary = _to_host(summary)
        self._summary_bytes = 4 * (batch + 2)
        self._event = torch.cuda.Event() if masks.device.type == "cuda" else None
        if self._event is not None:
            self._event.record()

    def fetch(self, crew: TracerCrew | None = None) -> HostDetections:
        """Waits for the device, then copies only the used rows, strings and (when a frame wants
        polygons) toggles (one more wait). A batch mixing frames with and without polygons
        copies every frame's toggles: one copy, without another wait to size the frames' parts.
        Given the tracer's crew, wakes the helpers the toggles call for before that copy."""
        if self._event is not None:
            self._event.synchronize()
        summary = self._summary.numpy()
        counts = summary[:-2].astype(np.int64)
        num_rows, num_toggles, num_chars = int(counts.sum()), int(summary[-2]), int(summary[-1])
        if crew is not None and any(self._polygons):
            crew.wake(helpers_for(num_toggles))
        toggles, strings = self._toggles, self._strings
        if num_toggles > toggles.capacity:  # more than the default room: the exact room, again
            toggles = mask_toggles(
                self._masks, self._regions, self._frames, capacity=num_toggles, blocks=self._toggle_blocks
            )
            strings = coco_strings(toggles, self._regions, self._frames)
            num_chars = int(strings.total.item())
        table = _to_host(self._regions.table[:num_rows])
        offsets = _to_host(strings.offsets[: num_rows + 1])
        chars = _to_host(strings.chars[:num_chars])
        copied = self._summary_bytes + 4 * (table.numel() + num_rows + 1) + num_chars
        ends = runs = None
        if any(self._polygons):
            ends = _to_host(toggles.ends[:num_rows])
            runs = _to_host(toggles.toggles[:num_toggles])
            copied += 4 * (num_rows + num_toggles)
        if self._event is not None:
            torch.cuda.current_stream().synchronize()
        table = table.numpy()
        return HostDetections(
            counts=counts,
            frames=table[:, DET_FRAME].astype(np.int64),
            class_ids=table[:, DET_CLASS].copy(),
            scores=table[:, DET_SCORE].view(np.float32).copy(),
            boxes=table[:, DET_BOX : DET_BOX + 4].view(np.float32).copy(),
            rle_chars=chars.numpy(),
            rle_offsets=offsets.numpy(),
            toggles=None if runs is None else runs.numpy(),
            toggle_ends=None if ends is None else ends.numpy(),
            device_to_host_bytes=copied,
        )

    def results(self) -> list[SegmentationResult]:
        """The batch's results (every polygon of a frame that skipped them empty)."""
        # fetch() wakes the tracer's helpers while the runs are copied, so they are running
        # when the runs arrive (backends.rle_runs).
        with kept_crew() if any(self._polygons) else contextlib.nullcontext() as crew:
            host = self.fetch(crew)
            return results_from_host(host, self._frames.image_sizes, self._settings, self._polygons, crew)


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
    polygons: Sequence[bool] | None = None,
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
        polygons: which frames get polygons (backends.postprocess_settings.frame_polygons).
        toggle_capacity: room for run boundaries (backends.rle_kernel.mask_toggles).
        toggle_blocks: the RLE kernel's tile (backends.rle_kernel.mask_toggles).
    """
    check_batch(dets, labels, masks, image_sizes)
    traced = frame_polygons(settings, polygons, len(image_sizes))
    frames = Frames.build(image_sizes, tuple(masks.shape[-2:]), masks.device)
    regions, toggles, strings = queue_device_work(
        dets, labels, masks, frames, settings, toggle_capacity=toggle_capacity, toggle_blocks=toggle_blocks
    )
    return PendingPostprocess(masks, frames, regions, toggles, strings, settings, traced, toggle_blocks)


def check_batch(dets: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, image_sizes: list) -> None:
    """ValueError for outputs of the wrong rank or a size count that is not the batch's; the
    kernels' launchers check the rest."""
    if labels.dim() != 3 or dets.dim() != 3 or masks.dim() != 4:
        raise ValueError(
            f"expected dets (B, Q, 4), labels (B, Q, C), masks (B, Q, h, w); got {list(dets.shape)}, "
            f"{list(labels.shape)}, {list(masks.shape)}"
        )
    if len(image_sizes) != labels.shape[0]:
        raise ValueError(f"{len(image_sizes)} image sizes for a batch of {labels.shape[0]}")
    if masks.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the postprocess kernels take CPU tensors only under TRITON_INTERPRET=1")


def queue_device_work(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    frames: Frames,
    settings: PostprocessSettings,
    *,
    toggle_capacity: int | None = None,
    toggle_blocks: tuple[int, int] | None = None,
) -> tuple[MaskRegions, MaskToggles, CocoStrings]:
    """Steps 1-4 of the module docstring, queued without a sync (backends.postprocess_graph
    captures them in a CUDA graph)."""
    has_name = class_name_flags(settings.classes, labels.shape[2], labels.device)
    selection = select_detections_batch(
        labels.sigmoid(), dets, frames.sizes, has_name, settings.num_select, settings.score_threshold
    )
    regions = mask_regions(selection.rows, selection.counts, masks, frames)
    toggles = mask_toggles(masks, regions, frames, capacity=toggle_capacity, blocks=toggle_blocks)
    return regions, toggles, coco_strings(toggles, regions, frames)


def runs_of(rows: np.ndarray, toggles: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The toggles and inclusive cumulative ends of the masks `rows` (ascending), from those of
    all masks: every mask when rows are all of them, else their parts gathered at once."""
    if len(rows) == len(ends):
        return toggles, ends
    ends = np.asarray(ends, dtype=np.int64)
    counts = np.diff(ends, prepend=0)[rows]
    kept_ends = np.cumsum(counts)
    shift = np.repeat(ends[rows] - kept_ends, counts)  # each kept toggle's old index minus its new one
    return toggles[np.arange(int(kept_ends[-1]) if len(rows) else 0) + shift], kept_ends


def results_from_host(
    host: HostDetections,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
    polygons: list[bool],
    crew: TracerCrew | None = None,
) -> list[SegmentationResult]:
    """Host detections -> one SegmentationResult per frame (the strings sliced, polygons traced
    for the detections of the frames whose `polygons` is True, with the crew's helpers when
    given, the others' left empty)."""
    rles = unpack_bytes(host.rle_chars, host.rle_offsets)
    outlines = [EMPTY_POLYGON] * len(rles)
    traced = np.flatnonzero(np.asarray(polygons, dtype=bool)[host.frames])
    if len(traced):
        heights = np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2)[host.frames[traced], 0]
        toggles, ends = runs_of(traced, host.toggles, host.toggle_ends)
        for row, outline in zip(traced, largest_contours_from_runs(toggles, ends, heights, crew), strict=True):
            outlines[row] = outline
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
    polygons: Sequence[bool] | None = None,
) -> list[SegmentationResult]:
    """backends.postprocess.postprocess_batch on the kernels: same arguments, same results."""
    if labels.shape[0] == 0:
        return []
    return launch_postprocess(dets, labels, masks, image_sizes, settings, polygons).results()
