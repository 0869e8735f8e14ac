"""Mask toggles (backends.rle_kernel) -> polygons, on the host.

A mask's toggles are the ascending column-major flat indices (x * height + y) where it changes
value: run starts and exclusive run ends, alternating (COCO's runs: a run may go on from the
bottom of one column to the top of the next). Every mask's tight crop is located at once
(crops_from_runs, numpy over the whole batch); then per mask the crop is rebuilt from its runs
and cv2.findContours runs on it with the crop's offset, as backends.polygons.largest_contour on
the full mask. (The COCO strings are made on the device: backends.rle_strings_kernel.)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from backends.results import EMPTY_POLYGON


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
        """Mask i's crop, uint8 row-major (height, width), or None when the mask is empty.

        One crop at a time, so that it stays in the cache from its fill to findContours: one
        np.repeat for all crops was no faster (1080p, 25 blobs, 4.3 M crop pixels, 2-core EPYC:
        4.2-4.6 ms for the polygons either way)."""
        if self.width[i] == 0:
            return None
        bounds = self.bounds[(self.bound_ends[i - 1] if i else 0) : self.bound_ends[i]]
        values = np.zeros(len(bounds) - 1, dtype=np.uint8)
        values[1::2] = 1
        columns = np.repeat(values, np.diff(bounds)).reshape(int(self.width[i]), int(self.height[i]))
        return cv2.transpose(columns)


def crops_from_runs(toggles: np.ndarray, ends: np.ndarray, heights: np.ndarray) -> Crops:
    """Toggles of every mask (each an even number: starts and ends of runs) -> the tight
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
        toggles: every mask's toggles, concatenated.
        ends: (N,) inclusive cumulative toggle counts per mask.
        heights: (N,) the height of each mask's frame.
    """
    crops = crops_from_runs(toggles, ends, heights)
    polygons = []
    # One mask after another: a thread pool measured slower on the H200 host (1080p, 25 masks:
    # 12.5 ms against 7.5 ms; benchmarks/results/h200/postprocess-threadpool-tried.md; 2 workers
    # on a 2-core EPYC: 2.5 ms against 2.1 ms), the crops being small.
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
