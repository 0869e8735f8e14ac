"""RF-DETR outputs -> detections with COCO RLE masks and polygons: the reference path.

The selection is rfdetr's PostProcess (rfdetr/models/postprocess.py): sigmoid, top num_select
over the flattened (query x class) grid with its tie rule (descending score, then ascending
flat index), cxcywh -> xyxy scaled to the original pixels and clamped, masks gathered by query,
bilinear-upsampled (align_corners=False) to the original size and thresholded at > 0. Then,
like rfdetr's predict(): keep score > threshold. Then this project's rule (backends.classes):
drop ids without a name. The GPU kernels of the roadmap are checked against this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from backends.classes import ClassTable
from backends.polygons import largest_contour
from backends.rle import encode_mask


@dataclass
class Selection:
    """The detections kept for one frame, before masks. K rows, best score first."""

    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64
    query_ids: np.ndarray  # (K,) int64
    boxes: np.ndarray  # (K, 4) float32, xyxy in original pixels


@dataclass
class SegmentationResult:
    """One frame's detections, as the ensemble returns them."""

    image_size: tuple[int, int]  # (height, width)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    class_names: list[str] = field(default_factory=list)
    rle_counts: list[bytes] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)

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


def select_topk(logits: torch.Tensor, num_select: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, C) logits -> scores, class ids, query ids of the top num_select (query, class) pairs."""
    prob = logits.sigmoid().reshape(-1)
    k = min(num_select, prob.numel())
    order = torch.argsort(prob, descending=True, stable=True)[:k]
    num_classes = logits.shape[1]
    return prob[order], order % num_classes, order // num_classes


def boxes_to_pixels(boxes_cxcywh: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, 4) normalized cxcywh -> (K, 4) xyxy in pixels, clamped to the frame."""
    cx, cy, w, h = boxes_cxcywh.unbind(-1)
    # Negative sizes count as 0, as in rfdetr's box_ops.box_cxcywh_to_xyxy.
    half_w, half_h = 0.5 * w.clamp(min=0.0), 0.5 * h.clamp(min=0.0)
    xyxy = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
    scale = torch.tensor([width, height, width, height], dtype=xyxy.dtype)
    return (xyxy * scale).clamp_min(0.0).clamp(max=scale)


def select_detections(
    dets: np.ndarray,
    labels: np.ndarray,
    image_size: tuple[int, int],
    num_select: int,
    score_threshold: float,
    classes: ClassTable,
) -> Selection:
    """One frame's (Q, 4) dets and (Q, C) logits -> the kept detections, boxes in pixels."""
    height, width = image_size
    scores, class_ids, query_ids = select_topk(torch.from_numpy(labels), num_select)
    keep = scores > score_threshold
    scores, class_ids, query_ids = scores[keep], class_ids[keep], query_ids[keep]
    named = torch.from_numpy(classes.named(class_ids.numpy()))
    scores, class_ids, query_ids = scores[named], class_ids[named], query_ids[named]
    boxes = boxes_to_pixels(torch.from_numpy(dets)[query_ids], height, width)
    return Selection(
        scores=scores.numpy().astype(np.float32),
        class_ids=class_ids.numpy(),
        query_ids=query_ids.numpy(),
        boxes=boxes.numpy().astype(np.float32),
    )


def upsample_mask(mask_logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) mask logits -> (height, width) bool: bilinear, align_corners=False, > 0."""
    logits = torch.from_numpy(np.ascontiguousarray(mask_logits))[None, None]
    resized = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return (resized[0, 0] > 0.0).numpy()


def postprocess_reference(
    dets: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    image_size: tuple[int, int],
    num_select: int,
    score_threshold: float,
    classes: ClassTable,
) -> SegmentationResult:
    """One frame's engine outputs -> its SegmentationResult.

    Args:
        dets: (Q, 4) normalized cxcywh boxes.
        labels: (Q, C) class logits.
        masks: (Q, h, w) mask logits.
        image_size: the original frame's (height, width).
        num_select: how many (query, class) pairs the top-k keeps (rfdetr's num_select).
        score_threshold: keep detections scoring strictly above it.
        classes: class id -> name table; ids without a name are dropped.
    """
    height, width = image_size
    sel = select_detections(dets, labels, image_size, num_select, score_threshold, classes)
    rles, polygons = [], []
    # One full-size mask alive at a time: memory stays bounded for 4K frames and many detections.
    for query in sel.query_ids:
        mask = upsample_mask(masks[query], height, width)
        rles.append(encode_mask(mask))
        polygons.append(largest_contour(mask))
    return SegmentationResult(
        image_size=(height, width),
        boxes=sel.boxes,
        scores=sel.scores,
        class_ids=sel.class_ids.astype(np.int32),
        class_names=classes.names_of(sel.class_ids),
        rle_counts=rles,
        polygons=polygons,
    )
