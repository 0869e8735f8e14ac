"""The tensor contract every stage of the ensemble and every client agrees on.

One place for the model and tensor names: configs, model.py files, clients and tests import
them from here, so a rename is one edit. Shapes are the Triton config shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Model names in the repository.
ENSEMBLE = "rfdetr_seg"
PREPROCESS = "rfdetr_seg_preprocess"
ENGINE = "rfdetr_seg_engine"
POSTPROCESS = "rfdetr_seg_postprocess"

# Ensemble input: one BGR uint8 frame, HxWx3, any size.
IMAGE = "image"

# Engine tensors (the names rfdetr's ONNX export and the TensorRT plan use).
ENGINE_INPUT = "input"  # FP32 [B, 3, R, R], normalized RGB
DETS = "dets"  # FP32 [B, Q, 4], normalized cxcywh
LABELS = "labels"  # FP32 [B, Q, C], class logits
MASKS = "masks"  # FP32 [B, Q, R/4, R/4], mask logits
ENGINE_OUTPUTS = (DETS, LABELS, MASKS)

# Preprocess -> postprocess: the frame's (height, width).
IMAGE_SIZE = "image_size"  # INT32 [2]

# Ensemble outputs, N detections per frame, variable length (no padding).
BOXES = "boxes"  # FP32 [N, 4], xyxy in original pixels
SCORES = "scores"  # FP32 [N]
CLASS_IDS = "class_ids"  # INT32 [N]
# Variable-length parts are packed (backends.packing): detection i owns data[offsets[i]:offsets[i+1]].
CLASS_NAMES = "class_names"  # UINT8 [U], the class names, UTF-8, concatenated
CLASS_NAME_OFFSETS = "class_name_offsets"  # INT32 [N + 1]
RLE_COUNTS = "rle_counts"  # UINT8 [T], COCO compressed RLE counts (column-major), concatenated
RLE_OFFSETS = "rle_offsets"  # INT32 [N + 1]; with IMAGE_SIZE, each is a COCO RLE
POLYGON_POINTS = "polygon_points"  # INT32 [P, 2], every detection's largest contour, concatenated
POLYGON_OFFSETS = "polygon_offsets"  # INT32 [N + 1]
ENSEMBLE_OUTPUTS = (
    BOXES,
    SCORES,
    CLASS_IDS,
    CLASS_NAMES,
    CLASS_NAME_OFFSETS,
    RLE_COUNTS,
    RLE_OFFSETS,
    POLYGON_POINTS,
    POLYGON_OFFSETS,
    IMAGE_SIZE,
)

# ImageNet statistics RF-DETR was trained with (rfdetr.detr.RFDETR.means / stds), RGB order.
MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)
MASK_STRIDE = 4


@dataclass(frozen=True)
class ModelSize:
    """One RF-DETR-Seg size: square input resolution and number of queries (num_select)."""

    name: str
    resolution: int
    num_queries: int

    @property
    def mask_size(self) -> int:
        return self.resolution // MASK_STRIDE


# rfdetr 1.11.2 RFDETRSeg* configs (resolution, num_queries == num_select).
MODEL_SIZES = {
    size.name: size
    for size in (
        ModelSize("nano", 312, 100),
        ModelSize("small", 384, 100),
        ModelSize("medium", 432, 200),
        ModelSize("large", 504, 200),
        ModelSize("xlarge", 624, 300),
        ModelSize("2xlarge", 768, 300),
    )
}

# The postprocess's class table, beside its model.py (backends.classes).
CLASSES_FILE = "class_names.json"
