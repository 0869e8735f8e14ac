"""The tensor contract every stage of the ensemble and every client agrees on.

One place for model names, tensor names, dtypes and dims: configs are checked against it
(tests/deploy/test_repository_configs.py), model.py files, clients and tests import the names
from here, so a rename is one edit. Numpy- and torch-free: clients import it anywhere.

Dims are per item, without the batch axis of batching models. Symbols stand for the engine's
sizes (EngineShape): R resolution, Q queries, C class logits, M = R / 4 mask side; -1 is any.
"""

from __future__ import annotations

from dataclasses import dataclass

# Model names in the repository.
ENSEMBLE = "rfdetr_seg"
PREPROCESS = "rfdetr_seg_preprocess"
ENGINE = "rfdetr_seg_engine"
POSTPROCESS = "rfdetr_seg_postprocess"
# Optional (tools.build_repository --jpeg): the same ensemble for frames sent as JPEG files, for
# clients on other hosts, where a raw 1080p frame (6.2 MB) is the request's cost.
JPEG_ENSEMBLE = "rfdetr_seg_jpeg"
PREPROCESS_JPEG = "rfdetr_seg_preprocess_jpeg"

# Tensor names.
IMAGE = "image"  # ensemble input: one BGR uint8 frame
JPEG = "jpeg"  # the JPEG ensemble's input: one frame's JPEG file, its bytes
ENGINE_INPUT = "input"  # normalized RGB, R x R (the name rfdetr's export and the TensorRT plan use)
DETS = "dets"  # normalized cxcywh boxes
LABELS = "labels"  # class logits
MASKS = "masks"  # mask logits
ENGINE_OUTPUTS = (DETS, LABELS, MASKS)
IMAGE_SIZE = "image_size"  # the frame's (height, width): preprocess -> postprocess -> client
BOXES = "boxes"  # xyxy in original pixels
SCORES = "scores"
CLASS_IDS = "class_ids"
# Variable-length parts are packed (backends.packing): detection i owns data[offsets[i]:offsets[i+1]].
CLASS_NAMES = "class_names"  # UTF-8, concatenated
CLASS_NAME_OFFSETS = "class_name_offsets"
RLE_COUNTS = "rle_counts"  # COCO compressed RLE counts (column-major), concatenated
RLE_OFFSETS = "rle_offsets"
POLYGON_POINTS = "polygon_points"  # every detection's largest external contour, concatenated
POLYGON_OFFSETS = "polygon_offsets"

# Request parameters (tritonclient's infer(..., parameters={...})): the ensemble forwards its
# request's parameters to every step's request (tritonserver 2.51 does: core PR #261, Sept. 2023;
# tests/integration/test_ensemble_parameters.py).
POLYGONS_PARAMETER = "polygons"  # bool: trace this frame's polygons; absent: the deployment's choice


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as Triton configs declare it: name, TYPE_ suffix, dims (ints, -1 or symbols)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]

    def resolve(self, shape: EngineShape) -> tuple[int, ...]:
        sizes = {
            "R": shape.resolution,
            "Q": shape.num_queries,
            "C": shape.num_classes,
            "M": shape.mask_size,
        }
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.dims)


# The ensemble serves one frame per request, in [1, H, W, 3] (the batch axis of the batching
# stages behind it); every output carries the same leading 1.
ENSEMBLE_INPUTS = (TensorSpec(IMAGE, "UINT8", (1, -1, -1, 3)),)
RESULT_OUTPUTS = (
    TensorSpec(BOXES, "FP32", (-1, 4)),
    TensorSpec(SCORES, "FP32", (-1,)),
    TensorSpec(CLASS_IDS, "INT32", (-1,)),
    TensorSpec(CLASS_NAMES, "UINT8", (-1,)),
    TensorSpec(CLASS_NAME_OFFSETS, "INT32", (-1,)),
    TensorSpec(RLE_COUNTS, "UINT8", (-1,)),
    TensorSpec(RLE_OFFSETS, "INT32", (-1,)),
    TensorSpec(POLYGON_POINTS, "INT32", (-1, 2)),
    TensorSpec(POLYGON_OFFSETS, "INT32", (-1,)),
    TensorSpec(IMAGE_SIZE, "INT32", (2,)),
)
ENSEMBLE_OUTPUTS = tuple(TensorSpec(t.name, t.dtype, (1, *t.dims)) for t in RESULT_OUTPUTS)
JPEG_ENSEMBLE_INPUTS = (TensorSpec(JPEG, "UINT8", (1, -1)),)

# The batching stages (max_batch_size > 0): dims per frame.
PREPROCESS_INPUTS = (TensorSpec(IMAGE, "UINT8", (-1, -1, 3)),)
PREPROCESS_OUTPUTS = (
    TensorSpec(ENGINE_INPUT, "FP32", (3, "R", "R")),
    TensorSpec(IMAGE_SIZE, "INT32", (2,)),
)
PREPROCESS_JPEG_INPUTS = (TensorSpec(JPEG, "UINT8", (-1,)),)
ENGINE_INPUTS = (TensorSpec(ENGINE_INPUT, "FP32", (3, "R", "R")),)
ENGINE_OUTPUT_SPECS = (
    TensorSpec(DETS, "FP32", ("Q", 4)),
    TensorSpec(LABELS, "FP32", ("Q", "C")),
    TensorSpec(MASKS, "FP32", ("Q", "M", "M")),
)
POSTPROCESS_INPUTS = (*ENGINE_OUTPUT_SPECS, TensorSpec(IMAGE_SIZE, "INT32", (2,)))
POSTPROCESS_OUTPUTS = RESULT_OUTPUTS

STAGE_TENSORS = {
    ENSEMBLE: (ENSEMBLE_INPUTS, ENSEMBLE_OUTPUTS),
    PREPROCESS: (PREPROCESS_INPUTS, PREPROCESS_OUTPUTS),
    ENGINE: (ENGINE_INPUTS, ENGINE_OUTPUT_SPECS),
    POSTPROCESS: (POSTPROCESS_INPUTS, POSTPROCESS_OUTPUTS),
}
# What a repository built with the JPEG ensemble adds (its engine and postprocess are shared).
JPEG_STAGE_TENSORS = {
    JPEG_ENSEMBLE: (JPEG_ENSEMBLE_INPUTS, ENSEMBLE_OUTPUTS),
    PREPROCESS_JPEG: (PREPROCESS_JPEG_INPUTS, PREPROCESS_OUTPUTS),
}

# ImageNet statistics RF-DETR was trained with (rfdetr.detr.RFDETR.means / stds), RGB order.
MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)
MASK_STRIDE = 4
COCO_CLASS_LOGITS = 91  # COCO-pretrained checkpoints: ids 0..90 (backends.classes)


@dataclass(frozen=True)
class EngineShape:
    """The engine's sizes: input R x R, Q queries, C class logits; masks are R/4."""

    resolution: int
    num_queries: int
    num_classes: int = COCO_CLASS_LOGITS

    @property
    def mask_size(self) -> int:
        return self.resolution // MASK_STRIDE


# rfdetr 1.11.2 RFDETRSeg* defaults (resolution, num_queries == num_select). A checkpoint may
# change the query or class count: repositories take the real sizes from the exported ONNX.
MODEL_SIZES = {
    "nano": EngineShape(312, 100),
    "small": EngineShape(384, 100),
    "medium": EngineShape(432, 200),
    "large": EngineShape(504, 200),
    "xlarge": EngineShape(624, 300),
    "2xlarge": EngineShape(768, 300),
}

# The postprocess's class table, beside its model.py (backends.classes).
CLASSES_FILE = "class_names.json"
