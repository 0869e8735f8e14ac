"""Builds a servable Triton model repository from model_repository/ and one engine file.

    python -m tools.build_repository --engine-file build/engines/rfdetr-seg-nano.onnx \
        --classes build/engines/rfdetr-seg-nano.classes.json --out build/model_repository

The engine variant follows the file: a .onnx runs on ONNX Runtime inside the python backend
(CPU, any host), a .plan is the TensorRT engine (platform tensorrt_plan). Both variants expose
the same model name and tensors, so the ensemble, the pre/postprocess and every client are the
same whichever engine runs. Tensor sizes are read from the ONNX file (for a plan: the ONNX it
was built from, --onnx). Config templates take ${RESOLUTION}, ${NUM_QUERIES}, ${NUM_CLASSES},
${MASK_SIZE}, ${MAX_BATCH_SIZE} and ${SCORE_THRESHOLD}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from backends.classes import ClassTable
from backends.contract import (
    CLASSES_FILE,
    DETS,
    ENGINE,
    ENSEMBLE,
    LABELS,
    MASK_STRIDE,
    POSTPROCESS,
    PREPROCESS,
)

SOURCE = Path(__file__).resolve().parent.parent / "model_repository"
ENGINE_VARIANTS = {".onnx": ("onnxruntime", "model.onnx"), ".plan": ("tensorrt", "model.plan")}



@dataclass(frozen=True)
class EngineShape:
    """The engine's tensor sizes: input R x R, Q queries, C class logits, masks R/4."""

    resolution: int
    num_queries: int
    num_classes: int

    @property
    def mask_size(self) -> int:
        return self.resolution // MASK_STRIDE

    @classmethod
    def from_onnx(cls, path: Path) -> EngineShape:
        """Read from the exported file itself: a checkpoint may change Q or C from its size's
        defaults, and the configs must say what the engine really returns."""
        from backends.engine_onnx import OnnxEngine

        session = OnnxEngine(path).session
        outputs = {o.name: o.shape for o in session.get_outputs()}
        return cls(
            resolution=int(session.get_inputs()[0].shape[-1]),
            num_queries=int(outputs[DETS][1]),
            num_classes=int(outputs[LABELS][2]),
        )


@dataclass(frozen=True)
class RepositorySettings:
    shape: EngineShape
    max_batch_size: int = 32
    score_threshold: float = 0.5

    def substitutions(self) -> dict[str, str]:
        return {
            "RESOLUTION": str(self.shape.resolution),
            "NUM_QUERIES": str(self.shape.num_queries),
            "NUM_CLASSES": str(self.shape.num_classes),
            "MASK_SIZE": str(self.shape.mask_size),
            "MAX_BATCH_SIZE": str(self.max_batch_size),
            "SCORE_THRESHOLD": repr(float(self.score_threshold)),
        }


def render(template: Path, destination: Path, values: dict[str, str]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = string.Template(template.read_text()).substitute(values)
    except KeyError as missing:
        raise ValueError(f"{template}: no value for ${{{missing.args[0]}}}") from None
    destination.write_text(text)


def _copy_stage(source: Path, destination: Path, values: dict[str, str]) -> None:
    """Copies one model folder, rendering its config.pbtxt template."""
    for path in source.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        target = destination / path.relative_to(source)
        if path.name == "config.pbtxt":
            render(path, target, values)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link where possible: engine files are 100+ MB."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_repository(
    engine_file: Path, classes: ClassTable, settings: RepositorySettings, out: Path
) -> Path:
    """Writes the repository to `out` (replacing what was there) and returns it."""
    if engine_file.suffix not in ENGINE_VARIANTS:
        raise ValueError(f"{engine_file}: the engine must be a .onnx or a TensorRT .plan file")
    if not engine_file.is_file():
        raise FileNotFoundError(f"engine file not found: {engine_file}")
    if len(classes.names) != settings.shape.num_classes:
        raise ValueError(
            f"class table has {len(classes.names)} ids but the engine has {settings.shape.num_classes} logits"
        )
    variant, model_file = ENGINE_VARIANTS[engine_file.suffix]
    values = settings.substitutions()
    if out.exists():
        shutil.rmtree(out)
    for stage in (ENSEMBLE, PREPROCESS, POSTPROCESS):
        _copy_stage(SOURCE / stage, out / stage, values)
    _copy_stage(SOURCE / ENGINE / variant, out / ENGINE, values)
    (out / ENGINE / "1").mkdir(parents=True, exist_ok=True)
    _link_or_copy(engine_file.resolve(), out / ENGINE / "1" / model_file)
    classes.save(out / POSTPROCESS / "1" / CLASSES_FILE)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine-file", type=Path, required=True, help="model .onnx or TensorRT .plan")
    parser.add_argument("--classes", type=Path, required=True, help="class table JSON from tools.export_onnx")
    parser.add_argument(
        "--onnx", type=Path, help="for a .plan: the ONNX it was built from, which gives the tensor sizes"
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    args = parser.parse_args(argv)
    shape_source = args.engine_file if args.engine_file.suffix == ".onnx" else args.onnx
    if shape_source is None:
        parser.error("a .plan engine needs --onnx: the ONNX it was built from gives the tensor sizes")
    settings = RepositorySettings(
        shape=EngineShape.from_onnx(shape_source),
        max_batch_size=args.max_batch_size,
        score_threshold=args.score_threshold,
    )
    print(build_repository(args.engine_file, ClassTable.load(args.classes), settings, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
