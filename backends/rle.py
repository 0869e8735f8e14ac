"""Binary masks <-> COCO RLE, column-major, byte-identical to pycocotools.

The compressed counts string is what COCO JSON stores under "counts"; with the frame's
(height, width) it is the whole mask.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> bytes:
    """(H, W) bool mask -> COCO compressed RLE counts."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {list(mask.shape)}")
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"]


def decode_mask(counts: bytes, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE counts -> (H, W) bool mask."""
    return mask_utils.decode({"size": [height, width], "counts": counts}).astype(bool)


def to_coco_json(counts: bytes, height: int, width: int) -> dict:
    """The COCO JSON form of one RLE mask: {"size": [h, w], "counts": "<ascii>"}."""
    return {"size": [int(height), int(width)], "counts": counts.decode("ascii")}
