"""RF-DETR-Seg checkpoint -> ONNX (input/dets/labels/masks, dynamic batch) + class table.

    python -m tools.export_onnx --size nano [--checkpoint rf-detr-seg-nano.pth] --out build/engines

Writes <out>/rfdetr-seg-<size>.onnx and <out>/rfdetr-seg-<size>.classes.json. Without
--checkpoint the model has random weights (the official ones cannot be downloaded on every
host): the pipeline runs end to end, but its detections mean nothing, and this says so loudly.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from tools.torchvision_cpu import ensure_torchvision_importable

logger = logging.getLogger("export_onnx")
# Random weights never score 0.5; this threshold keeps a few detections per frame, so masks, RLE
# and polygons still flow through every stage (demo, tests, benchmarks).
RANDOM_WEIGHTS_THRESHOLD = 0.05

RANDOM_WEIGHTS_NOTICE = """
************************************************************************************
*  NO CHECKPOINT GIVEN: exporting RF-DETR-Seg-{size} with RANDOM WEIGHTS.          *
*  Every stage runs for real, but the detections and masks are meaningless.        *
*  Pass --checkpoint /path/to/rf-detr-seg-{size}.pth for real results.             *
************************************************************************************
"""


def _model_class(size: str):
    ensure_torchvision_importable()
    import rfdetr

    names = {
        "nano": "RFDETRSegNano",
        "small": "RFDETRSegSmall",
        "medium": "RFDETRSegMedium",
        "large": "RFDETRSegLarge",
        "xlarge": "RFDETRSegXLarge",
        "2xlarge": "RFDETRSeg2XLarge",
    }
    return getattr(rfdetr, names[size])


def output_paths(out_dir: Path, size: str) -> tuple[Path, Path]:
    stem = out_dir / f"rfdetr-seg-{size}"
    return stem.with_suffix(".onnx"), stem.with_suffix(".classes.json")


def export(size: str, out_dir: Path, checkpoint: Path | None = None) -> tuple[Path, Path]:
    """Exports the model; returns (onnx path, class table path)."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if checkpoint is None:
        print(RANDOM_WEIGHTS_NOTICE.format(size=size), file=sys.stderr, flush=True)
        import torch

        torch.manual_seed(0)  # the same random model on every run, so results are comparable
    model = _model_class(size)(pretrain_weights=str(checkpoint) if checkpoint else None)

    from rfdetr.assets.coco_classes import COCO_CLASSES

    classes = ClassTable.from_rfdetr(model.class_names, model.model.args.num_classes, COCO_CLASSES)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, classes_path = output_paths(out_dir, size)
    work = out_dir / f".export-{size}"
    exported = Path(model.export(output_dir=str(work), dynamic_batch=True, verbose=False))
    shutil.move(str(exported), onnx_path)
    shutil.rmtree(work, ignore_errors=True)
    classes.save(classes_path)
    logger.info("exported %s (%d named classes)", onnx_path, sum(n is not None for n in classes.names))
    return onnx_path, classes_path


def random_weights_export(size: str, out_dir: Path) -> tuple[Path, Path]:
    """The seeded random-weights export is the same every time: reuse it when out_dir has it."""
    onnx_path, classes_path = output_paths(out_dir, size)
    if onnx_path.exists() and classes_path.exists():
        logger.info("reusing %s (random weights)", onnx_path)
        return onnx_path, classes_path
    return export(size, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="nano", choices=sorted(MODEL_SIZES))
    parser.add_argument("--checkpoint", type=Path, help="a local RF-DETR-Seg .pth; random weights without it")
    parser.add_argument("--out", type=Path, default=Path("build/engines"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    onnx_path, classes_path = export(args.size, args.out, args.checkpoint)
    print(onnx_path)
    print(classes_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
