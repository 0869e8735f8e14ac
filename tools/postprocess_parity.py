"""Parity of the postprocess kernels with the reference, on many generated cases.

    python -m tools.postprocess_parity [--cases 200] [--device cuda|cpu] [--seed 0]

Each case is a batch of 1-3 frames of engine-shaped outputs of one kind (KINDS: random logits,
blob masks, masks touching borders or spanning whole columns, empty and full masks, tiny or
degenerate boxes, one query passing for several classes, every query selected, tied scores),
run through backends.postprocess.postprocess_batch (the reference, torch on the same device) and
backends.postprocess_kernel.postprocess_batch_kernels. It prints detections matched, class
disagreements, RLE byte-identical count, mean/min mask IoU, polygon differences and every
non-identical mask with its explanation: the pixels that differ and the reference's upsampled
logit there (a difference is explained when each such logit is within float noise of 0).
Exit status 1 when the issue's bar is missed: every detection matched, >= 99.9 % RLE identical,
mean IoU >= 0.9995, every difference explained.

On --device cpu the kernels run in Triton's interpreter (small frames: slow); on cuda the
frames go up to 3840x2160 with 100 and 300 queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from backends.classes import ClassTable
from backends.postprocess import postprocess_batch, select_detections
from backends.postprocess_settings import PostprocessSettings
from backends.results import SegmentationResult
from backends.rle import decode_mask

KINDS = (
    "random",
    "blobs",
    "borders",
    "empty_full",
    "tiny_boxes",
    "multi_class",
    "all_selected",
    "ties",
)
SMALL_SIZES = ((1, 1), (7, 13), (97, 131), (175, 312))  # (height, width); the interpreter's
FULL_SIZES = ((720, 1280), (1080, 1920), (2160, 3840), (176, 312), (1, 1))
# Engine shapes (queries, mask side) of the RF-DETR-Seg sizes with 100 and 300 queries.
SMALL_ENGINES = ((12, 20), (30, 78))
FULL_ENGINES = ((100, 78), (300, 192))
NUM_CLASSES = 91
# COCO-pretrained checkpoints' ids without a name (backends.classes).
COCO_UNNAMED = (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
NOISE = 1e-5  # a differing pixel is explained when |logit| <= NOISE * max(1, max |logit| of its mask)
BAR_RLE_IDENTICAL = 0.999
BAR_MEAN_IOU = 0.9995


def coco_like_classes() -> ClassTable:
    """A 91-id table with COCO's holes (ids without a name)."""
    return ClassTable(tuple(None if i in COCO_UNNAMED else f"class_{i}" for i in range(NUM_CLASSES)))


@dataclass
class Case:
    """One batch of engine outputs and the settings to postprocess it with."""

    name: str
    dets: torch.Tensor  # (B, Q, 4)
    labels: torch.Tensor  # (B, Q, C)
    masks: torch.Tensor  # (B, Q, h, w)
    image_sizes: list[tuple[int, int]]
    settings: PostprocessSettings


def _blob(rng: np.random.Generator, side: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (8.0 * (1.0 - np.hypot(yy - cy, xx - cx) / radius)).astype(np.float32)


def _frame_outputs(
    kind: str, rng: np.random.Generator, num_queries: int, side: int, named: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's dets, labels and masks of a kind (see KINDS)."""
    q, c = num_queries, NUM_CLASSES
    dets = rng.uniform(0.05, 0.95, (q, 4)).astype(np.float32)
    dets[:, 2:] = rng.uniform(0.02, 0.6, (q, 2))
    labels = rng.normal(-8.0, 1.0, (q, c)).astype(np.float32)
    masks = rng.normal(-3.0, 1.0, (q, side, side)).astype(np.float32)
    hot = rng.choice(q, int(rng.integers(1, min(q, 12) + 1)), replace=False)
    labels[hot, rng.integers(0, c, len(hot))] = rng.uniform(-1.0, 4.0, len(hot))
    for query in hot:
        cy, cx = rng.uniform(0, side, 2)
        masks[query] += _blob(rng, side, cy, cx, rng.uniform(1.5, side / 2))
    if kind == "random":
        labels = rng.normal(-2.0, 2.0, (q, c)).astype(np.float32)
        masks = rng.normal(0.0, 2.0, (q, side, side)).astype(np.float32)
    elif kind == "borders":
        for i, query in enumerate(hot):
            edge = rng.choice([0.0, side - 1.0, -2.0, side + 1.0])
            along = rng.uniform(0, side)
            cy, cx = (edge, along) if i % 2 else (along, edge)
            masks[query] = rng.normal(-3.0, 1.0, (side, side)) + _blob(rng, side, cy, cx, rng.uniform(2, side))
            if i % 3 == 0:  # a full-height band: runs continue from one column into the next
                lo = int(rng.integers(0, side))
                masks[query, :, lo : lo + int(rng.integers(1, side // 3 + 2))] = 4.0
    elif kind == "empty_full":
        for i, query in enumerate(hot):
            masks[query] = -np.abs(masks[query])
            if i % 4 == 1:
                masks[query] = np.abs(masks[query]) + 0.5  # full
            elif i % 4 == 2:
                y, x = rng.integers(0, side, 2) if i % 8 == 2 else rng.choice([0, side - 1], 2)
                masks[query, y, x] = 3.0  # one positive logit, maybe in a corner
            elif i % 4 == 3:
                masks[query, :, :] = 0.0  # exactly 0: never > 0
    elif kind == "tiny_boxes":
        dets[hot, 2:] = rng.choice([0.0, 1e-6, -0.1, 1.5, 1e-3], (len(hot), 2))
        dets[hot, :2] = rng.choice([-0.2, 0.0, 0.5, 1.0, 1.2], (len(hot), 2))
        for query in hot:
            masks[query] = rng.normal(-3.0, 1.0, (side, side)) + _blob(rng, side, *rng.uniform(0, side, 2), 1.2)
    elif kind == "multi_class":
        for query in hot:
            classes = rng.choice(c, int(rng.integers(2, 6)), replace=False)
            labels[query, classes] = rng.uniform(-0.5, 3.0, len(classes))
    elif kind == "all_selected":
        labels = rng.normal(-8.0, 1.0, (q, c)).astype(np.float32)
        best = rng.choice(np.flatnonzero(named), q)
        labels[np.arange(q), best] = rng.uniform(0.5, 5.0, q)
        for query in range(q):
            cy, cx = rng.uniform(0, side, 2)
            masks[query] = rng.normal(-3.0, 1.0, (side, side)) + _blob(rng, side, cy, cx, rng.uniform(1.5, side / 3))
    elif kind == "ties":
        labels[hot] = rng.choice(np.float32([-8.0, -1.0, 0.0, 1.5]), (len(hot), c))
        labels[rng.choice(q, 3)] = labels[hot[0]]  # identical rows: ties across queries
    return dets, labels, masks


def make_case(
    kind: str,
    rng: np.random.Generator,
    image_sizes: list[tuple[int, int]],
    num_queries: int,
    mask_side: int,
    device: torch.device | str,
    *,
    num_select: int | None = None,
) -> Case:
    """A batch of len(image_sizes) frames of one kind, with settings fitting the kind
    (num_select: the kind's choice unless given)."""
    classes = coco_like_classes()
    named = classes.named(np.arange(NUM_CLASSES))
    outputs = [_frame_outputs(kind, rng, num_queries, mask_side, named) for _ in image_sizes]
    dets, labels, masks = (torch.from_numpy(np.stack([o[i] for o in outputs])).to(device) for i in range(3))
    if kind == "all_selected":
        threshold, choice = 0.0, num_queries
    elif kind == "random":  # noise masks: runs everywhere, so few of them at full size
        threshold, choice = float(rng.choice([0.0, 0.3, 0.5])), min(num_queries, 20)
    else:
        threshold, choice = float(rng.choice([0.05, 0.3, 0.5])), int(rng.choice([num_queries, 3 * num_queries, 5]))
    settings = PostprocessSettings(num_select or choice, threshold, classes)
    sizes = "+".join(f"{h}x{w}" for h, w in image_sizes)
    return Case(f"{kind} Q={num_queries} {mask_side}^2 {sizes}", dets, labels, masks, image_sizes, settings)


def generate_cases(
    count: int,
    device: torch.device | str,
    *,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] | None = None,
    engines: tuple[tuple[int, int], ...] | None = None,
    kinds: tuple[str, ...] = KINDS,
) -> Iterator[Case]:
    """count cases cycling through kinds; batches of 1-3 frames drawn from sizes.

    Defaults: small frames and engines on the CPU (the interpreter), full ones on a GPU."""
    full = torch.device(device).type == "cuda"
    sizes = sizes or (FULL_SIZES if full else SMALL_SIZES)
    engines = engines or (FULL_ENGINES if full else SMALL_ENGINES)
    rng = np.random.default_rng(seed)
    for i in range(count):
        num_queries, side = engines[int(rng.integers(len(engines)))]
        picks = rng.integers(0, len(sizes), int(rng.integers(1, 4)))
        yield make_case(kinds[i % len(kinds)], rng, [sizes[p] for p in picks], num_queries, side, device)


@dataclass
class MaskDifference:
    """A detection whose RLE is not byte-identical to the reference's."""

    case: str
    frame: int
    detection: int
    pixels: int  # pixels that differ
    max_abs_logit: float  # the reference's largest |upsampled logit| among them
    mask_scale: float  # max(1, max |low-res logit| of the mask)

    @property
    def explained(self) -> bool:
        return self.pixels > 0 and self.max_abs_logit <= NOISE * self.mask_scale

    def describe(self) -> str:
        why = (
            f"pixels whose upsampled logit is within float noise of 0 (|v| <= {self.max_abs_logit:.3g})"
            if self.explained
            else "UNEXPLAINED" + (" (same pixels, different encoding)" if self.pixels == 0 else "")
        )
        return f"{self.case}, frame {self.frame}, detection {self.detection}: {self.pixels} pixels differ: {why}"


@dataclass
class ParityReport:
    """Counts over every compared detection."""

    cases: int = 0
    expected: int = 0  # detections of the reference
    got: int = 0  # detections of the kernels
    matched: int = 0  # same place, class, score and box (within 1e-4 px)
    class_disagreements: int = 0
    rle_identical: int = 0
    ious: list[float] = field(default_factory=list)
    polygon_differences: int = 0  # detections whose polygon differs
    polygon_differences_same_mask: int = 0  # ... while the masks are identical
    max_box_diff: float = 0.0
    differences: list[MaskDifference] = field(default_factory=list)

    def add(self, other: ParityReport) -> None:
        for name in (
            "cases", "expected", "got", "matched", "class_disagreements", "rle_identical",
            "polygon_differences", "polygon_differences_same_mask",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ious += other.ious
        self.max_box_diff = max(self.max_box_diff, other.max_box_diff)
        self.differences += other.differences

    @property
    def compared(self) -> int:
        return len(self.ious)

    def failures(self) -> list[str]:
        """What misses the bar (empty when it is met)."""
        problems = []
        if self.matched != self.expected or self.got != self.expected:
            problems.append(f"{self.matched} of {self.expected} detections matched ({self.got} returned)")
        if self.compared and self.rle_identical < BAR_RLE_IDENTICAL * self.compared:
            problems.append(f"RLE identical for {self.rle_identical} of {self.compared}")
        if self.compared and float(np.mean(self.ious)) < BAR_MEAN_IOU:
            problems.append(f"mean mask IoU {np.mean(self.ious):.6f} < {BAR_MEAN_IOU}")
        unexplained = [d for d in self.differences if not d.explained]
        if unexplained:
            problems.append(f"{len(unexplained)} non-identical masks unexplained")
        if self.polygon_differences_same_mask:
            problems.append(f"{self.polygon_differences_same_mask} polygons differ on identical masks")
        return problems

    def format(self) -> str:
        ious = np.asarray(self.ious) if self.ious else np.ones(1)
        lines = [
            f"cases: {self.cases}",
            f"detections matched: {self.matched} / {self.expected} (kernels returned {self.got})",
            f"class disagreements: {self.class_disagreements}",
            f"RLE byte-identical: {self.rle_identical} / {self.compared}",
            f"mask IoU: mean {ious.mean():.6f}, min {ious.min():.6f}",
            (
                f"polygon differences: {self.polygon_differences}"
                f" ({self.polygon_differences_same_mask} on identical masks)"
            ),
            f"max box difference: {self.max_box_diff:.3g} px",
            f"non-identical masks: {len(self.differences)}",
            *(f"  {d.describe()}" for d in self.differences),
        ]
        return "\n".join(lines)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def compare_frame(
    case: Case, frame: int, reference: SegmentationResult, kernels: SegmentationResult
) -> ParityReport:
    """Detection by detection, in order (the order is part of the contract)."""
    report = ParityReport(expected=len(reference), got=len(kernels))
    height, width = reference.image_size
    n = min(len(reference), len(kernels))
    query_ids = None
    for i in range(n):
        same_class = reference.class_ids[i] == kernels.class_ids[i]
        report.class_disagreements += int(not same_class)
        box_diff = float(np.max(np.abs(reference.boxes[i] - kernels.boxes[i])))
        report.max_box_diff = max(report.max_box_diff, box_diff)
        report.matched += int(
            same_class
            and reference.scores[i] == kernels.scores[i]
            and box_diff <= 1e-4
            and reference.class_names[i] == kernels.class_names[i]
        )
        same_polygon = np.array_equal(reference.polygons[i], kernels.polygons[i])
        report.polygon_differences += int(not same_polygon)
        if reference.rle_counts[i] == kernels.rle_counts[i]:
            report.rle_identical += 1
            report.ious.append(1.0)
            report.polygon_differences_same_mask += int(not same_polygon)
            continue
        ours = decode_mask(kernels.rle_counts[i], height, width)
        theirs = decode_mask(reference.rle_counts[i], height, width)
        report.ious.append(_iou(ours, theirs))
        if query_ids is None:
            sel = select_detections(case.dets[frame], case.labels[frame], (height, width), case.settings)
            query_ids = sel.query_ids.tolist()
        logits = case.masks[frame, query_ids[i]]
        upsampled = F.interpolate(logits[None, None], size=(height, width), mode="bilinear", align_corners=False)
        values = upsampled[0, 0].cpu().numpy()[ours != theirs]
        report.differences.append(
            MaskDifference(
                case=case.name,
                frame=frame,
                detection=i,
                pixels=int(values.size),
                max_abs_logit=float(np.abs(values).max(initial=0.0)),
                mask_scale=max(1.0, float(logits.abs().max())),
            )
        )
    return report


def compare_case(case: Case, kernels: Callable[..., list[SegmentationResult]] | None = None) -> ParityReport:
    """The reference and the kernels (default postprocess_batch_kernels) on one case."""
    if kernels is None:
        from backends.postprocess_kernel import postprocess_batch_kernels as kernels
    args = (case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    reference, ours = postprocess_batch(*args), kernels(*args)
    report = ParityReport(cases=1)
    for frame, (theirs, mine) in enumerate(zip(reference, ours, strict=True)):
        report.add(compare_frame(case, frame, theirs, mine))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel modules load
    total = ParityReport()
    start = time.perf_counter()
    for case in generate_cases(args.cases, device, seed=args.seed):
        total.add(compare_case(case))
    print(f"device: {device}; {time.perf_counter() - start:.1f} s")
    print(total.format())
    problems = total.failures()
    print("bar: met" if not problems else "bar: MISSED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
