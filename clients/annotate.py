"""Draws one frame's detections: mask overlay, polygon outline, box and "name score" label."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from backends.results import SegmentationResult
from backends.rle import decode_mask

_GOLDEN_RATIO = 0.618033988749895


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A BGR colour for the class: same id, same colour; neighbouring ids far apart in hue."""
    hue = (class_id * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(frame: np.ndarray, result: SegmentationResult, mask_alpha: float = 0.45) -> np.ndarray:
    """A copy of the BGR frame with the result drawn on it.

    Args:
        frame: (H, W, 3) uint8 BGR, the frame the result belongs to.
        result: its detections.
        mask_alpha: opacity of the mask overlay.
    """
    if tuple(frame.shape[:2]) != tuple(result.image_size):
        raise ValueError(f"frame is {frame.shape[:2]} but the result is for {result.image_size}")
    canvas = frame.copy()
    height, width = result.image_size
    for counts, class_id in zip(result.rle_counts, result.class_ids, strict=True):
        mask = decode_mask(counts, height, width)
        colour = np.array(class_colour(int(class_id)), dtype=np.float32)
        canvas[mask] = ((1 - mask_alpha) * canvas[mask] + mask_alpha * colour).astype(np.uint8)
    # Outlines and labels go on top of every overlay, so later masks never hide them.
    for box, score, class_id, name, polygon in zip(
        result.boxes,
        result.scores,
        result.class_ids,
        result.class_names,
        result.polygons,
        strict=True,
    ):
        colour = class_colour(int(class_id))
        if len(polygon):
            cv2.polylines(canvas, [polygon.reshape(-1, 1, 2).astype(np.int32)], True, colour, 2)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 1)
        _label(canvas, f"{name} {score:.2f}", (x0, y0), colour)
    return canvas


def _label(
    canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]
) -> None:
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    x = corner[0]
    # Above the box when there is room, else inside it.
    y = corner[1] if corner[1] - text_h - baseline >= 0 else corner[1] + text_h + baseline
    cv2.rectangle(canvas, (x, y - text_h - baseline), (x + text_w, y), colour, cv2.FILLED)
    cv2.putText(canvas, text, (x, y - baseline), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
