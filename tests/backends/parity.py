"""rfdetr's own PostProcess as the oracle, and a detection-by-detection comparison that counts
every difference (the seeds' bar: every detection matched, masks identical)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backends.classes import ClassTable
from backends.results import SegmentationResult
from backends.rle import decode_mask
from backends.torchvision_cpu import ensure_torchvision_importable

ensure_torchvision_importable()
from rfdetr.models.postprocess import PostProcess  # noqa: E402


@dataclass
class RfdetrDetections:
    scores: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray  # (K, H, W) bool


def rfdetr_postprocess(
    dets: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    image_size: tuple[int, int],
    num_select: int,
    score_threshold: float,
    classes: ClassTable,
) -> RfdetrDetections:
    """rfdetr's PostProcess + predict()'s `score > threshold`, then the named-class rule."""
    outputs = {
        "pred_boxes": torch.from_numpy(dets)[None],
        "pred_logits": torch.from_numpy(labels)[None],
        "pred_masks": torch.from_numpy(masks)[None],
    }
    target_sizes = torch.tensor([list(image_size)])
    result = PostProcess(num_select=num_select)(outputs, target_sizes, score_threshold=score_threshold)[0]
    keep = (result["scores"] > score_threshold).numpy()
    class_ids = result["labels"].numpy()
    keep &= classes.named(class_ids)
    return RfdetrDetections(
        scores=result["scores"].numpy()[keep],
        class_ids=class_ids[keep],
        boxes=result["boxes"].numpy()[keep],
        masks=result["masks"][:, 0].numpy()[keep],
    )


@dataclass
class ParityReport:
    expected: int
    got: int
    class_mismatches: int
    max_score_diff: float
    max_box_diff: float
    mask_mismatches: int  # detections whose decoded mask differs in any pixel

    def assert_identical(self) -> None:
        assert (self.expected, self.class_mismatches, self.mask_mismatches) == (self.got, 0, 0), self
        assert self.max_score_diff == 0.0 and self.max_box_diff <= 1e-4, self


def compare(result: SegmentationResult, oracle: RfdetrDetections) -> ParityReport:
    n = min(len(result), len(oracle.scores))
    height, width = result.image_size
    masks_differ = sum(
        not np.array_equal(decode_mask(result.rle_counts[i], height, width), oracle.masks[i]) for i in range(n)
    )
    return ParityReport(
        expected=len(oracle.scores),
        got=len(result),
        class_mismatches=int(np.sum(result.class_ids[:n] != oracle.class_ids[:n])),
        max_score_diff=float(np.max(np.abs(result.scores[:n] - oracle.scores[:n]), initial=0.0)),
        max_box_diff=float(np.max(np.abs(result.boxes[:n] - oracle.boxes[:n]), initial=0.0)),
        mask_mismatches=masks_differ,
    )
