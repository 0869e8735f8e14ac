"""RF-DETR-Seg checkpoint -> ONNX (input/dets/labels/masks, dynamic batch) + class table + weights.

    python -m tools.export_onnx --size nano [--checkpoint rf-detr-seg-nano.pth] --out build/engines

Writes <out>/rfdetr-seg-<size>.onnx, <out>/rfdetr-seg-<size>.classes.json and the weights it
exported, <out>/rfdetr-seg-<size>.pth (rfdetr's checkpoint layout), so the ONNX and TensorRT
engines and the eager torch engine (backends.engine_torch) serve the same model. Without
--checkpoint the model has random weights (the official ones cannot be downloaded on every
host): the pipeline runs end to end, but its detections mean nothing, and this says so loudly.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from backends.engine_torch import model_class

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


@dataclass(frozen=True)
class ExportedModel:
    """One export's files: the ONNX graph, its class table, and the weights it was traced from."""

    onnx: Path
    classes: Path
    weights: Path


def output_paths(out_dir: Path, size: str) -> ExportedModel:
    stem = out_dir / f"rfdetr-seg-{size}"
    return ExportedModel(
        onnx=stem.with_suffix(".onnx"),
        classes=stem.with_suffix(".classes.json"),
        weights=stem.with_suffix(".pth"),
    )


def save_weights(model, path: Path) -> None:
    """Writes an rfdetr model's weights in rfdetr's checkpoint layout {"model", "args"}.

    `pretrain_weights=` (and so backends.engine_torch) loads it back as the same model: the
    args carry the class names and the query layout (num_queries x group_detr rows).
    """
    import torch

    args = model.model.args
    checkpoint = {
        "model": {k: v.detach().cpu() for k, v in model.model.model.state_dict().items()},
        "args": {
            "class_names": list(model.class_names),
            "num_classes": args.num_classes,
            "num_queries": args.num_queries,
            "group_detr": args.group_detr,
            "resolution": args.resolution,
            "patch_size": args.patch_size,
            "segmentation_head": args.segmentation_head,
        },
    }
    partial = path.with_name(path.name + ".partial")  # never a truncated .pth that looks whole
    torch.save(checkpoint, partial)
    partial.replace(path)


def export(size: str, out_dir: Path, checkpoint: Path | None = None) -> ExportedModel:
    """Exports the model: the ONNX graph, its class table and the weights it exported."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if checkpoint is None:
        print(RANDOM_WEIGHTS_NOTICE.format(size=size), file=sys.stderr, flush=True)
        import torch

        torch.manual_seed(0)  # the same random model on every run, so results are comparable
    model = model_class(size)(pretrain_weights=str(checkpoint) if checkpoint else None)

    from rfdetr.assets.coco_classes import COCO_CLASSES

    classes = ClassTable.from_rfdetr(model.class_names, model.model.args.num_classes, COCO_CLASSES)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, size)
    work = out_dir / f".export-{size}"
    # model.export() traces a deep copy, so model.model.model keeps the weights it exported.
    exported = Path(model.export(output_dir=str(work), dynamic_batch=True, verbose=False))
    shutil.move(str(exported), paths.onnx)
    shutil.rmtree(work, ignore_errors=True)
    classes.save(paths.classes)
    save_weights(model, paths.weights)  # last: its presence marks a complete export
    logger.info("exported %s (%d named classes)", paths.onnx, sum(n is not None for n in classes.names))
    return paths


def random_weights_export(size: str, out_dir: Path) -> ExportedModel:
    """The seeded random-weights export is the same every time: reuse it when out_dir has it all."""
    paths = output_paths(out_dir, size)
    if all(p.exists() for p in (paths.onnx, paths.classes, paths.weights)):
        logger.info("reusing %s (random weights)", paths.onnx)
        return paths
    return export(size, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="nano", choices=sorted(MODEL_SIZES))
    parser.add_argument("--checkpoint", type=Path, help="a local RF-DETR-Seg .pth; random weights without it")
    parser.add_argument("--out", type=Path, default=Path("build/engines"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    exported = export(args.size, args.out, args.checkpoint)
    print(exported.onnx)
    print(exported.classes)
    print(exported.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
