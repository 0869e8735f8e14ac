"""Largest external contour of a binary mask, found on the mask's tight crop only.

Matches cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE) on the whole frame (the
reference below) while touching only the foreground's bounding box. Polygons travel packed
(backends.packing): every detection's points concatenated, plus N+1 offsets.
"""

from __future__ import annotations

import cv2
import numpy as np

from backends.results import EMPTY_POLYGON


def _largest(contours: tuple[np.ndarray, ...]) -> np.ndarray:
    if not contours:
        return EMPTY_POLYGON
    # The first of the largest by area: the order findContours returns is the scan order.
    largest = max(contours, key=cv2.contourArea)
    return largest.reshape(-1, 2).astype(np.int32)


def largest_contour_reference(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask -> (P, 2) int32 xy points of its largest external contour."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return _largest(contours)


def foreground_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the mask's true pixels, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def largest_contour(mask: np.ndarray) -> np.ndarray:
    """Same result as largest_contour_reference, computed on the tight foreground crop."""
    bounds = foreground_bounds(mask)
    if bounds is None:
        return EMPTY_POLYGON
    y0, y1, x0, x1 = bounds
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
    contours, _ = cv2.findContours(
        crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0)
    )
    return _largest(contours)
