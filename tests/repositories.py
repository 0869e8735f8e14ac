"""Test repositories: the exported random-weights Nano served for any target and engine."""

from __future__ import annotations

from pathlib import Path

from tools.build_repository import build_repository, spec_from_files
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, ExportedModel


def build_test_repository(exported: ExportedModel, out: Path, target: str = "cpu", **options) -> Path:
    """The exported Nano served for `target` at the random-weights threshold (unless
    `score_threshold` says otherwise), batches of 8."""
    options.setdefault("max_batch_size", 8)
    threshold = options.pop("score_threshold", RANDOM_WEIGHTS_THRESHOLD)
    spec = spec_from_files(target, options.pop("engine", None), exported.onnx, threshold, **options)
    return build_repository(spec, out)
