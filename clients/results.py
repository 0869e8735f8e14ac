"""Triton responses -> SegmentationResult, and SegmentationResult -> JSON-lines records.

The wire format itself (which tensors, how they are packed) lives in backends.results, shared
with the postprocess that writes it. Torch-free, like every clients module.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from backends.results import SegmentationResult, decode_result
from backends.rle import to_coco_json


class Response(Protocol):
    """What the decoder needs of tritonclient's InferResult."""

    def as_numpy(self, name: str) -> np.ndarray | None: ...


def result_from_response(response: Response) -> SegmentationResult:
    """Decodes every ensemble output of one response (backends.results.decode_result).

    Args:
        response: a tritonclient InferResult of the ensemble.

    Raises:
        ValueError: an output is missing or offsets do not fit their data.
    """
    return decode_result(response.as_numpy)


def to_json_record(
    frame_index: int, result: SegmentationResult, timestamp_s: float | None
) -> dict[str, Any]:
    """One frame's JSON-lines record: masks as COCO RLE JSON, polygons as [[x, y], ...].

    Args:
        frame_index: the frame's position in the stream, from 0.
        result: the frame's detections.
        timestamp_s: the frame's time in the video, None when unknown.
    """
    height, width = result.image_size
    detections = [
        {
            "box_xyxy": [float(v) for v in box],
            "score": float(score),
            "class_id": int(class_id),
            "class_name": name,
            "mask": to_coco_json(counts, height, width),
            "polygon": polygon.tolist(),
        }
        for box, score, class_id, name, counts, polygon in zip(
            result.boxes,
            result.scores,
            result.class_ids,
            result.class_names,
            result.rle_counts,
            result.polygons,
            strict=True,
        )
    ]
    return {
        "frame": frame_index,
        "timestamp_s": timestamp_s,
        "image_size": [height, width],
        "detections": detections,
    }


def error_record(frame_index: int, error: str, timestamp_s: float | None) -> dict[str, Any]:
    """The JSON-lines record of a frame that failed: its index, time and error text."""
    return {"frame": frame_index, "timestamp_s": timestamp_s, "error": error}


def dropped_record(frame_index: int, timestamp_s: float | None) -> dict[str, Any]:
    """The JSON-lines record of a live frame dropped because the server fell behind."""
    return {"frame": frame_index, "timestamp_s": timestamp_s, "dropped": True}
