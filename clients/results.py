"""Triton responses -> SegmentationResult, and SegmentationResult -> JSON-lines records."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from backends import contract
from backends.packing import unpack, unpack_bytes
from backends.postprocess import SegmentationResult
from backends.rle import to_coco_json


class Response(Protocol):
    """What the decoder needs of tritonclient's InferResult."""

    def as_numpy(self, name: str) -> np.ndarray | None: ...


def result_from_response(response: Response) -> SegmentationResult:
    """Decodes every ensemble output of one response.

    Args:
        response: a tritonclient InferResult of the ensemble.

    Raises:
        ValueError: an output is missing or the polygon offsets do not fit the points.
    """

    def output(name: str) -> np.ndarray:
        array = response.as_numpy(name)
        if array is None:
            raise ValueError(f"response lacks output {name!r}")
        return array

    height, width = (int(v) for v in output(contract.IMAGE_SIZE))
    return SegmentationResult(
        image_size=(height, width),
        boxes=output(contract.BOXES).astype(np.float32).reshape(-1, 4),
        scores=output(contract.SCORES).astype(np.float32),
        class_ids=output(contract.CLASS_IDS).astype(np.int32),
        class_names=[
            name.decode()
            for name in unpack_bytes(output(contract.CLASS_NAMES), output(contract.CLASS_NAME_OFFSETS))
        ],
        rle_counts=unpack_bytes(output(contract.RLE_COUNTS), output(contract.RLE_OFFSETS)),
        polygons=unpack(output(contract.POLYGON_POINTS).reshape(-1, 2), output(contract.POLYGON_OFFSETS)),
    )


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
