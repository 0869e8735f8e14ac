"""SegmentationResult -> supervision.Detections, for users of Roboflow's supervision (trackers,
annotators, zones). supervision is optional (`pip install supervision`): imported only here, and
only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backends.results import SegmentationResult

if TYPE_CHECKING:
    import supervision


def to_detections(result: SegmentationResult, masks: bool = False) -> supervision.Detections:
    """One frame's detections as supervision.Detections.

    Args:
        result: the frame's result (clients.stream's FrameOutcome.result).
        masks: decode every mask from its COCO RLE into Detections.mask, (N, H, W) bool; off by
            default, since full-frame masks cost H x W bytes each.

    Returns:
        Detections with xyxy, confidence, class_id and data["class_name"].

    Raises:
        ImportError: supervision is not installed; the message says how to install it.
    """
    try:
        import supervision as sv
    except ImportError as error:
        raise ImportError(
            "clients.supervision_adapter needs supervision: pip install supervision "
            "(or pip install '.[clients]')"
        ) from error
    height, width = result.image_size
    mask = None
    if masks:
        # Imported here too: pycocotools decodes, and only mask users need it.
        from backends.rle import decode_mask

        mask = np.zeros((len(result), height, width), bool)
        for i, counts in enumerate(result.rle_counts):
            mask[i] = decode_mask(counts, height, width)
    return sv.Detections(
        xyxy=np.asarray(result.boxes, np.float32).reshape(-1, 4),
        mask=mask,
        confidence=np.asarray(result.scores, np.float32),
        class_id=np.asarray(result.class_ids, int),
        data={"class_name": np.asarray(result.class_names, dtype=str)},
    )
