"""RF-DETR outputs -> detections with COCO RLE masks and polygons: the reference path, in torch
ops on whatever device the engine outputs are (the `gpu` target's baseline).

The selection is rfdetr's PostProcess (rfdetr/models/postprocess.py): sigmoid, top num_select
over the flattened (query x class) grid with its tie rule (descending score, then ascending
flat index), cxcywh -> xyxy scaled to the original pixels and clamped, masks gathered by query,
bilinear-upsampled (align_corners=False) to the original size and thresholded at > 0. Then,
like rfdetr's predict(): keep score > threshold. Then this project's rule (backends.classes):
drop ids without a name. RLE and polygons are computed on the CPU, one full-size mask at a time.
The Triton-lang kernels (backends.postprocess_kernel, impl "triton") are checked against this
module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from backends.postprocess_settings import PostprocessSettings, frame_polygons
from backends.polygons import largest_contour
from backends.results import EMPTY_POLYGON, SegmentationResult
from backends.rle import encode_mask


@dataclass
class Selection:
    """The detections kept for one frame, before masks. K rows, best score first, on the
    outputs' device."""

    scores: torch.Tensor  # (K,) float32
    class_ids: torch.Tensor  # (K,) int64
    query_ids: torch.Tensor  # (K,) int64
    boxes: torch.Tensor  # (K, 4) float32, xyxy in original pixels


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
    scale = torch.tensor([width, height, width, height], dtype=xyxy.dtype, device=xyxy.device)
    return (xyxy * scale).clamp_min(0.0).clamp(max=scale)


def select_detections(
    dets: torch.Tensor, labels: torch.Tensor, image_size: tuple[int, int], settings: PostprocessSettings
) -> Selection:
    """One frame's (Q, 4) dets and (Q, C) logits -> the kept detections, boxes in pixels."""
    height, width = image_size
    scores, class_ids, query_ids = select_topk(labels, settings.num_select)
    keep = scores > settings.score_threshold
    scores, class_ids, query_ids = scores[keep], class_ids[keep], query_ids[keep]
    named = torch.from_numpy(settings.classes.named(class_ids.cpu().numpy())).to(scores.device)
    scores, class_ids, query_ids = scores[named], class_ids[named], query_ids[named]
    return Selection(scores, class_ids, query_ids, boxes_to_pixels(dets[query_ids], height, width))


def upsample_mask(mask_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(h, w) mask logits -> (height, width) bool: bilinear, align_corners=False, > 0."""
    resized = F.interpolate(mask_logits[None, None], size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0] > 0.0


def postprocess_frame(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_size: tuple[int, int],
    settings: PostprocessSettings,
    polygons: bool | None = None,
) -> SegmentationResult:
    """One frame's engine outputs -> its SegmentationResult.

    Args:
        dets: (Q, 4) normalized cxcywh boxes.
        labels: (Q, C) class logits.
        masks: (Q, h, w) mask logits.
        image_size: the original frame's (height, width).
        settings: top-k size, threshold and class table.
        polygons: trace the polygons (else every one is empty); None: settings.polygons.
    """
    height, width = image_size
    trace = settings.polygons if polygons is None else polygons
    sel = select_detections(dets, labels, image_size, settings)
    rles, outlines = [], []
    # One full-size mask alive at a time: memory stays bounded for 4K frames and many detections.
    for query in sel.query_ids.tolist():
        mask = upsample_mask(masks[query], height, width).cpu().numpy()
        rles.append(encode_mask(mask))
        outlines.append(largest_contour(mask) if trace else EMPTY_POLYGON)
    class_ids = sel.class_ids.cpu().numpy()
    return SegmentationResult(
        image_size=(height, width),
        boxes=sel.boxes.cpu().numpy().astype(np.float32),
        scores=sel.scores.cpu().numpy().astype(np.float32),
        class_ids=class_ids.astype(np.int32),
        class_names=settings.classes.names_of(class_ids),
        rle_counts=rles,
        polygons=outlines,
    )


def postprocess_batch(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
    polygons: Sequence[bool] | None = None,
) -> list[SegmentationResult]:
    """A batch of engine outputs, (B, Q, ...), and each frame's (height, width) -> B results;
    `polygons`: which frames get them (backends.postprocess_settings.frame_polygons)."""
    traced = frame_polygons(settings, polygons, len(image_sizes))
    return [
        postprocess_frame(d, lab, m, size, settings, trace)
        for d, lab, m, size, trace in zip(dets, labels, masks, image_sizes, traced, strict=True)
    ]


def postprocess_batch_kernels(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
    polygons: Sequence[bool] | None = None,
) -> list[SegmentationResult]:
    """postprocess_batch by the Triton-lang kernels (backends.postprocess_kernel): selection and
    COCO RLE runs on the GPU straight from the low-res logits, strings and polygons on the host;
    a single frame on a GPU replayed from a CUDA graph (backends.postprocess_graph)."""
    # Imported here: triton is needed only where this impl is served.
    from backends.postprocess_graph import postprocess_batch_graphed as kernels

    return kernels(dets, labels, masks, image_sizes, settings, polygons)


# The postprocess model's `impl` parameter picks one of these.
POSTPROCESS_IMPLS = {"reference": postprocess_batch, "triton": postprocess_batch_kernels}
