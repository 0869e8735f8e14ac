"""Mask toggles (backends.rle_kernel) -> COCO compressed RLE and polygons, on the host.

A mask's toggles are the ascending column-major flat indices (x * height + y) where it changes
value: run starts and exclusive run ends, a run that wraps from the bottom of one column to the
top of the next appearing as the same index twice. Everything here is numpy over the whole
batch at once (no Python loop per pixel or per run), except one cv2.findContours per mask.

- coco_counts: toggles -> COCO's uncompressed counts (zeros first, alternating, no trailing 0);
- compress_counts: counts -> COCO's compressed strings, pycocotools' rleToString vectorized;
- largest_contours_from_runs: every mask's tight crop located at once (crops_from_runs), then
  per mask the crop rebuilt from its runs (np.repeat) and cv2.findContours with the crop's
  offset, as backends.polygons.largest_contour on the full mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from backends.results import EMPTY_POLYGON

_CHUNKS = 7  # 5-bit chunks of a count delta (|delta| < 2**31 < 2**34)


def _starts(ends: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], ends[:-1]]).astype(np.int64)


def segment_ids(ends: np.ndarray) -> np.ndarray:
    """ends (inclusive cumulative lengths) -> the segment index of every element."""
    lengths = np.diff(np.concatenate([[0], ends]))
    return np.repeat(np.arange(len(ends)), lengths)


def merge_column_joins(toggles: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drops each index that appears twice in a mask's toggles (a run across a column join).

    Args:
        toggles: every mask's toggles, concatenated, int.
        ends: (N,) inclusive cumulative toggle counts per mask.

    Returns:
        The toggles without those pairs, and their new ends.
    """
    toggles = np.asarray(toggles, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    mask_of = segment_ids(ends)
    twin = (toggles[1:] == toggles[:-1]) & (mask_of[1:] == mask_of[:-1])
    keep = np.ones(len(toggles), dtype=bool)
    keep[1:][twin] = False
    keep[:-1][twin] = False
    kept_per_mask = np.bincount(mask_of[keep], minlength=len(ends))
    return toggles[keep], np.cumsum(kept_per_mask)


def coco_counts(toggles: np.ndarray, ends: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Toggles (merged) -> COCO uncompressed counts, as pycocotools' rleEncode writes them.

    A mask's counts are [t0, t1 - t0, ..., area - t_last], the last dropped when it is 0 (the
    mask ends inside a run); an empty mask is [area].

    Args:
        toggles: every mask's merged toggles, concatenated.
        ends: (N,) inclusive cumulative toggle counts per mask.
        areas: (N,) height * width of each mask's frame.

    Returns:
        counts (int64, concatenated) and their (N,) inclusive cumulative lengths per mask.
    """
    toggles = np.asarray(toggles, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    areas = np.asarray(areas, dtype=np.int64)
    starts = _starts(ends)
    sizes = ends - starts
    mask_of = segment_ids(ends)
    previous = np.empty_like(toggles)
    previous[1:] = toggles[:-1]
    previous[starts[sizes > 0]] = 0
    nonempty = sizes > 0
    last = np.zeros(len(ends), dtype=np.int64)
    last[nonempty] = toggles[ends[nonempty] - 1]
    tails = areas - last
    has_tail = tails > 0
    out_ends = np.cumsum(sizes + has_tail)
    out_starts = _starts(out_ends)
    counts = np.empty(int(out_ends[-1]) if len(out_ends) else 0, dtype=np.int64)
    counts[out_starts[mask_of] + (np.arange(len(toggles)) - starts[mask_of])] = toggles - previous
    counts[(out_starts + sizes)[has_tail]] = tails[has_tail]
    return counts, out_ends


def compress_counts(counts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO uncompressed counts -> compressed strings, byte-identical to pycocotools.

    pycocotools' rleToString: count i > 2 is stored as its difference with count i - 2, then
    each value as 5-bit chunks, low first, + 48, bit 0x20 set on all chunks but the last,
    stopping once the rest is 0 (or -1 with the sign bit 0x10 set): a value v takes n chunks,
    the least n with -2**(5n - 1) <= v < 2**(5n - 1).

    Args:
        counts: every mask's counts, concatenated.
        ends: (N,) inclusive cumulative count lengths per mask.

    Returns:
        (S,) uint8 characters of all strings, concatenated, and (N + 1,) int64 offsets.
    """
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    mask_of = segment_ids(ends)
    values = counts.copy()
    delta = np.flatnonzero(np.arange(len(counts)) - _starts(ends)[mask_of] > 2)
    values[delta] -= counts[delta - 2]
    magnitude = np.where(values < 0, ~values, values)
    chunks = np.ones(len(values), dtype=np.int64)
    for n in range(1, _CHUNKS):
        chunks += magnitude >= (1 << (5 * n - 1))
    value_ends = np.cumsum(chunks)
    owner = np.repeat(np.arange(len(values)), chunks)
    index = np.arange(int(value_ends[-1]) if len(values) else 0) - (value_ends - chunks)[owner]
    more = index < chunks[owner] - 1
    chars = (((values[owner] >> (5 * index)) & 0x1F) | (more << 5)) + 48
    per_mask = np.concatenate([[0], value_ends[ends - 1]]) if len(values) else np.zeros(len(ends) + 1, np.int64)
    return chars.astype(np.uint8), per_mask.astype(np.int64)


def split_strings(chars: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """Concatenated strings and their offsets -> one bytes object per string."""
    blob = chars.tobytes()
    return [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


@dataclass
class Crops:
    """Every mask's tight foreground crop as runs in the crop's own column-major order.

    Mask i (when it has runs) spans columns x0[i]..x0[i] + width[i] - 1 and rows
    y0[i]..y0[i] + height[i] - 1; its runs are [bounds[2j + 1], bounds[2j + 2]) in
    bounds[bound_ends[i - 1]:bound_ends[i]], which starts at 0 and ends at width * height."""

    x0: np.ndarray
    y0: np.ndarray
    width: np.ndarray
    height: np.ndarray
    bounds: np.ndarray
    bound_ends: np.ndarray

    def mask(self, i: int) -> np.ndarray | None:
        """Mask i's crop, uint8 row-major (height, width), or None when the mask is empty."""
        if self.width[i] == 0:
            return None
        bounds = self.bounds[(self.bound_ends[i - 1] if i else 0) : self.bound_ends[i]]
        values = np.zeros(len(bounds) - 1, dtype=np.uint8)
        values[1::2] = 1
        columns = np.repeat(values, np.diff(bounds)).reshape(int(self.width[i]), int(self.height[i]))
        return cv2.transpose(columns)


def crops_from_runs(toggles: np.ndarray, ends: np.ndarray, heights: np.ndarray) -> Crops:
    """Merged toggles of every mask (each an even number: starts and ends of runs) -> the tight
    crops, computed for all masks at once.

    A run that wraps from one column into the next sets rows 0 and height - 1: its mask's crop
    is then full height, where crop and frame column-major indices differ by x0 * height only.
    """
    toggles = np.asarray(toggles, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.int64)
    count = len(ends)
    runs_per_mask = np.diff(np.concatenate([[0], ends])) // 2
    run_mask = np.repeat(np.arange(count), runs_per_mask)
    starts, stops = toggles[0::2], toggles[1::2]
    frame_h = heights[run_mask]
    first_col, last_col = starts // frame_h, (stops - 1) // frame_h
    top, bottom = starts % frame_h, (stops - 1) % frame_h

    has_runs = runs_per_mask > 0
    first_run = (np.cumsum(runs_per_mask) - runs_per_mask)[has_runs]
    last_run = np.cumsum(runs_per_mask)[has_runs] - 1
    x0 = np.zeros(count, dtype=np.int64)
    x1 = np.full(count, -1, dtype=np.int64)
    y0 = np.zeros(count, dtype=np.int64)
    y1 = np.full(count, -1, dtype=np.int64)
    wraps = np.zeros(count, dtype=bool)
    if len(first_run):
        x0[has_runs], x1[has_runs] = first_col[first_run], last_col[last_run]
        y0[has_runs] = np.minimum.reduceat(top, first_run)
        y1[has_runs] = np.maximum.reduceat(bottom, first_run)
        wraps[has_runs] = np.logical_or.reduceat(last_col > first_col, first_run)
    y0 = np.where(wraps, 0, y0)
    crop_h = np.where(wraps, heights, y1 - y0 + 1)
    crop_w = x1 - x0 + 1

    h, rx0, ry0 = crop_h[run_mask], x0[run_mask], y0[run_mask]
    crop_starts = np.where(h == frame_h, starts - rx0 * frame_h, (first_col - rx0) * h + (top - ry0))
    # Per mask: 0, then each run's start and end in the crop, then the crop's area.
    bound_ends = np.cumsum(2 * runs_per_mask + 2)
    bounds = np.empty(int(bound_ends[-1]) if count else 0, dtype=np.int64)
    first_bound = bound_ends - (2 * runs_per_mask + 2)
    bounds[first_bound] = 0
    bounds[bound_ends - 1] = crop_w * crop_h
    run_index = np.arange(len(starts)) - (np.cumsum(runs_per_mask) - runs_per_mask)[run_mask]
    slot = first_bound[run_mask] + 1 + 2 * run_index
    bounds[slot] = crop_starts
    bounds[slot + 1] = crop_starts + (stops - starts)
    return Crops(x0, y0, np.maximum(crop_w, 0), np.maximum(crop_h, 0), bounds, bound_ends)


def largest_contours_from_runs(toggles: np.ndarray, ends: np.ndarray, heights: np.ndarray) -> list[np.ndarray]:
    """Every mask's polygon: the same as backends.polygons.largest_contour on the full mask.

    Args:
        toggles: every mask's merged toggles (merge_column_joins), concatenated.
        ends: (N,) inclusive cumulative toggle counts per mask.
        heights: (N,) the height of each mask's frame.
    """
    crops = crops_from_runs(toggles, ends, heights)
    polygons = []
    # One mask after another: a thread pool measured slower on the H200 host (1080p, 25 masks:
    # 12.5 ms against 7.5 ms; benchmarks/results/h200/postprocess.md), the crops being small.
    for i in range(len(ends)):
        mask = crops.mask(i)
        if mask is None:
            polygons.append(EMPTY_POLYGON)
            continue
        offset = (int(crops.x0[i]), int(crops.y0[i]))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
        # backends.polygons' rule: the first of the largest by area, in findContours' order.
        polygons.append(max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.int32))
    return polygons
