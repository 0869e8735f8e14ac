"""Two servings of the same frame compared detection by detection, every difference counted.

Used where two paths should agree to float noise (the cpu and gpu targets, the ONNX and torch
engines, a TensorRT plan and its ONNX in tools.check_plan): detections are matched by class, score and box, not by position, since scores that
tie to float noise may swap places. A detection one side lacks is explained when its score sits
within noise of the threshold or of the top-k cut (the lowest selected score); anything else is
unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backends.results import SegmentationResult
from backends.rle import decode_mask

SCORE_NOISE = 1e-4


@dataclass
class Comparison:
    matched: int = 0
    explained: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    worst_box_px: float = 0.0
    worst_score: float = 0.0
    min_mask_iou: float = 1.0

    def add(self, other: Comparison) -> None:
        self.matched += other.matched
        self.explained += other.explained
        self.unexplained += other.unexplained
        self.worst_box_px = max(self.worst_box_px, other.worst_box_px)
        self.worst_score = max(self.worst_score, other.worst_score)
        self.min_mask_iou = min(self.min_mask_iou, other.min_mask_iou)

    def __str__(self) -> str:
        return (
            f"{self.matched} matched, {len(self.explained)} explained, {len(self.unexplained)} unexplained; "
            f"worst box {self.worst_box_px:.2e} px, worst score {self.worst_score:.2e}, "
            f"min mask IoU {self.min_mask_iou:.5f}; explained: {self.explained}; unexplained: {self.unexplained}"
        )


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(
    expected: SegmentationResult,
    served: SegmentationResult,
    threshold: float,
    box_tol_px: float,
    score_noise: float = SCORE_NOISE,
) -> Comparison:
    """Matches served detections to expected ones (same class, score within score_noise, box
    within box_tol_px) and explains the rest (a score within score_noise of the threshold or of
    the top-k cut). The default noise is fp32's; an FP16 engine needs a wider one."""
    if served.image_size != expected.image_size:
        raise ValueError(f"frame sizes differ: {expected.image_size} vs {served.image_size}")
    height, width = expected.image_size
    report = Comparison()
    cut = min(expected.scores.min(initial=1.0), served.scores.min(initial=1.0))
    free = set(range(len(served)))
    for i in range(len(expected)):
        candidates = [
            j
            for j in free
            if served.class_ids[j] == expected.class_ids[i]
            and abs(served.scores[j] - expected.scores[i]) <= score_noise
            and np.abs(served.boxes[j] - expected.boxes[i]).max() <= box_tol_px
        ]
        if not candidates:
            _explain(report, "expected", expected, i, threshold, cut, score_noise)
            continue
        j = min(candidates, key=lambda j: np.abs(served.boxes[j] - expected.boxes[i]).max())
        free.remove(j)
        report.matched += 1
        report.worst_box_px = max(report.worst_box_px, float(np.abs(served.boxes[j] - expected.boxes[i]).max()))
        report.worst_score = max(report.worst_score, float(abs(served.scores[j] - expected.scores[i])))
        iou = mask_iou(
            decode_mask(served.rle_counts[j], height, width),
            decode_mask(expected.rle_counts[i], height, width),
        )
        report.min_mask_iou = min(report.min_mask_iou, iou)
    for j in sorted(free):
        _explain(report, "served", served, j, threshold, cut, score_noise)
    return report


def _explain(
    report: Comparison,
    side: str,
    result: SegmentationResult,
    i: int,
    threshold: float,
    cut: float,
    noise: float,
) -> None:
    score = float(result.scores[i])
    what = f"{side} only: class {result.class_ids[i]} score {score:.6f}"
    if abs(score - threshold) <= noise:
        report.explained.append(f"{what} (within {noise:g} of the threshold {threshold})")
    elif abs(score - cut) <= noise:
        report.explained.append(f"{what} (within {noise:g} of the top-k cut {cut:.6f})")
    else:
        report.unexplained.append(what)
