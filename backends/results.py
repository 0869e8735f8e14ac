"""One frame's result and the wire format that carries it, both directions.

The postprocess encodes a SegmentationResult into the ensemble's output tensors; clients decode
those tensors back into the same type. Numpy only (no torch, no cv2): clients import it on
hosts without torch. Variable-length parts travel packed (backends.packing): detection i owns
data[offsets[i]:offsets[i + 1]].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backends import contract
from backends.packing import pack, pack_bytes, unpack, unpack_bytes

EMPTY_POLYGON = np.zeros((0, 2), dtype=np.int32)


@dataclass
class SegmentationResult:
    """One frame's detections, best score first."""

    image_size: tuple[int, int]  # (height, width)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (N, 4) xyxy px
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # (N,)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))  # (N,)
    class_names: list[str] = field(default_factory=list)
    rle_counts: list[bytes] = field(default_factory=list)  # COCO compressed counts, column-major
    polygons: list[np.ndarray] = field(default_factory=list)  # (P_i, 2) int32 xy

    def __post_init__(self) -> None:
        n = len(self.scores)
        lengths = {
            "boxes": len(self.boxes),
            "class_ids": len(self.class_ids),
            "class_names": len(self.class_names),
            "rle_counts": len(self.rle_counts),
            "polygons": len(self.polygons),
        }
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            raise ValueError(f"{n} scores but {wrong}")

    def __len__(self) -> int:
        return len(self.scores)


def encode_result(result: SegmentationResult) -> dict[str, np.ndarray]:
    """The result as the ensemble's output tensors (contract.ENSEMBLE_OUTPUTS), unbatched."""
    names, name_offsets = pack_bytes([name.encode() for name in result.class_names])
    rles, rle_offsets = pack_bytes(result.rle_counts)
    points, point_offsets = pack(result.polygons, EMPTY_POLYGON)
    return {
        contract.BOXES: np.asarray(result.boxes, np.float32).reshape(-1, 4),
        contract.SCORES: np.asarray(result.scores, np.float32),
        contract.CLASS_IDS: np.asarray(result.class_ids, np.int32),
        contract.CLASS_NAMES: names,
        contract.CLASS_NAME_OFFSETS: name_offsets,
        contract.RLE_COUNTS: rles,
        contract.RLE_OFFSETS: rle_offsets,
        contract.POLYGON_POINTS: points,
        contract.POLYGON_OFFSETS: point_offsets,
        contract.IMAGE_SIZE: np.asarray(result.image_size, np.int32),
    }


def decode_result(output: Callable[[str], np.ndarray | None]) -> SegmentationResult:
    """Inverse of encode_result; a leading batch axis of 1 (the served tensors') is accepted.

    Args:
        output: returns the tensor of an output name, or None when it is missing
            (tritonclient's InferResult.as_numpy, or a dict's get).

    Raises:
        ValueError: an output is missing or offsets do not fit their data.
    """

    def get(name: str) -> np.ndarray:
        array = output(name)
        if array is None:
            raise ValueError(f"response lacks output {name!r}")
        return np.asarray(array)

    def flat(name: str) -> np.ndarray:
        return get(name).reshape(-1)

    height, width = (int(v) for v in flat(contract.IMAGE_SIZE))
    return SegmentationResult(
        image_size=(height, width),
        boxes=get(contract.BOXES).astype(np.float32).reshape(-1, 4),
        scores=flat(contract.SCORES).astype(np.float32),
        class_ids=flat(contract.CLASS_IDS).astype(np.int32),
        class_names=[
            name.decode()
            for name in unpack_bytes(flat(contract.CLASS_NAMES), flat(contract.CLASS_NAME_OFFSETS))
        ],
        rle_counts=unpack_bytes(flat(contract.RLE_COUNTS), flat(contract.RLE_OFFSETS)),
        polygons=unpack(get(contract.POLYGON_POINTS).reshape(-1, 2), flat(contract.POLYGON_OFFSETS)),
    )
