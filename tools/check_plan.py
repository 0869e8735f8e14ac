"""Checks a TensorRT plan against the ONNX it was built from, on a few frames.

    python -m tools.check_plan --plan X.plan --onnx X.onnx [--frames 4] [--score-threshold 0.5]

FP16 plans are a known accuracy risk for RF-DETR (rf-detr #176, #649: confidence collapse).
The same normalized frames go through trtexec (`--loadInputs`, `--exportOutput`) and through
ONNX Runtime; the report gives each output's largest difference and, after the reference
postprocess, the detections matched, explained (a score within noise of the threshold or the
top-k cut) and unexplained (tools.compare_results). Exits 1 when any detection is unexplained or a
matched mask's IoU falls under 0.95: such a plan changes what users get.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from backends.classes import ClassTable
from backends.contract import ENGINE_INPUT, ENGINE_OUTPUTS
from backends.engine_onnx import OnnxEngine
from backends.postprocess import postprocess_frame
from backends.postprocess_settings import PostprocessSettings
from backends.preprocess import preprocess_frame
from tools.compare_results import Comparison, compare
from tools.make_sample_video import render_frames

MIN_MASK_IOU = 0.95
FRAME_SIZES = [(720, 1280), (1080, 1920), (480, 640), (360, 640)]


def trtexec_outputs(plan: Path, batch: np.ndarray, work: Path) -> dict[str, np.ndarray]:
    """Runs the plan once on `batch` with trtexec; its outputs by name."""
    inputs, exported = work / "input.bin", work / "outputs.json"
    np.ascontiguousarray(batch, np.float32).tofile(inputs)
    shape = "x".join(str(d) for d in batch.shape)
    command = [
        "trtexec",
        f"--loadEngine={plan}",
        f"--shapes={ENGINE_INPUT}:{shape}",
        f"--loadInputs={ENGINE_INPUT}:{inputs}",
        f"--exportOutput={exported}",
        "--iterations=1",
        "--warmUp=0",
        "--duration=0",
        "--avgRuns=1",
    ]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0 or not exported.exists():
        raise RuntimeError(f"trtexec could not run {plan} (exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return parse_exported_outputs(json.loads(exported.read_text()))


def parse_exported_outputs(records: list[dict]) -> dict[str, np.ndarray]:
    """trtexec's --exportOutput JSON ([{"name", "dimensions": "AxBxC", "values"}]) -> arrays."""
    outputs = {}
    for record in records:
        shape = tuple(int(d) for d in str(record["dimensions"]).split("x"))
        outputs[record["name"]] = np.asarray(record["values"], np.float32).reshape(shape)
    missing = set(ENGINE_OUTPUTS) - set(outputs)
    if missing:
        raise ValueError(f"the plan's outputs lack {sorted(missing)}: found {sorted(outputs)}")
    return outputs


def check_plan(
    plan: Path, engine: OnnxEngine, settings: PostprocessSettings, frames: int, work: Path
) -> tuple[dict[str, float], Comparison]:
    """(largest |plan - onnx| per output, detection comparison) on `frames` sample frames."""
    images = [next(iter(render_frames(1, w, h))) for h, w in (FRAME_SIZES * frames)[:frames]]
    batch = np.concatenate([preprocess_frame(torch.from_numpy(i), engine.resolution).numpy() for i in images])
    expected, served = engine(batch), trtexec_outputs(plan, batch, work)
    differences = {name: float(np.abs(served[name] - expected[name]).max()) for name in ENGINE_OUTPUTS}
    report = Comparison()
    for i, image in enumerate(images):
        results = [
            postprocess_frame(*(torch.from_numpy(out[name][i]) for name in ENGINE_OUTPUTS), image.shape[:2], settings)
            for out in (expected, served)
        ]
        report.add(compare(*results, settings.score_threshold, box_tol_px=2.0))
    return differences, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, required=True, help="the ONNX the plan was built from")
    parser.add_argument("--classes", type=Path, help="class table (default: beside the ONNX)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        classes = ClassTable.load(args.classes or args.onnx.with_suffix(".classes.json"))
        engine = OnnxEngine(args.onnx)
        settings = PostprocessSettings(engine.shape.num_queries, args.score_threshold, classes)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory() as work:
        differences, report = check_plan(args.plan, engine, settings, args.frames, Path(work))
    print(f"plan {args.plan} vs {args.onnx}, {args.frames} frames:")
    print("  largest |difference|: " + ", ".join(f"{name} {value:.3g}" for name, value in differences.items()))
    print(f"  detections at threshold {args.score_threshold}: {report}")
    if report.unexplained or report.min_mask_iou < MIN_MASK_IOU:
        print(f"  the plan changes detections (unexplained, or a mask IoU under {MIN_MASK_IOU})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
