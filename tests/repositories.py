"""Test repositories: the exported random-weights Nano served for any target and engine, and
configs-only specs around a dummy engine file (rendered, never served)."""

from __future__ import annotations

from pathlib import Path

from backends import contract
from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from backends.postprocess_settings import PostprocessSettings
from tools.build_repository import (
    ENGINE_VARIANTS,
    RepositorySpec,
    build_repository,
    spec_from_files,
)
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, ExportedModel
from tools.targets import TARGETS

# The engines' class logits, the last one without a name.
CLASSES = ClassTable(tuple(f"class_{i}" for i in range(contract.COCO_CLASS_LOGITS - 1)) + (None,))


def build_test_repository(exported: ExportedModel, out: Path, target: str = "cpu", **options) -> Path:
    """The exported Nano served for `target` at the random-weights threshold (unless
    `score_threshold` says otherwise), batches of 8."""
    options.setdefault("max_batch_size", 8)
    threshold = options.pop("score_threshold", RANDOM_WEIGHTS_THRESHOLD)
    spec = spec_from_files(target, options.pop("engine", None), exported.onnx, threshold, **options)
    return build_repository(spec, out)


def dummy_engine_file(work: Path, engine: str) -> Path:
    path = work / f"dummy-engine{ENGINE_VARIANTS[engine][2]}"
    path.write_bytes(b"dummy engine: configs only")
    return path


def config_spec(target: str, engine: str, work: Path, size: str = "nano", **options) -> RepositorySpec:
    """`target`'s repository spec for `engine` of `size`, its engine file a dummy in `work`:
    for tests of the rendered configs (tools.build_repository.render_repository: a build would
    try to compile a gpu torch engine on a GPU host)."""
    settings = PostprocessSettings(MODEL_SIZES[size].num_queries, 0.5, CLASSES)
    return RepositorySpec(
        TARGETS[target], engine, dummy_engine_file(work, engine), MODEL_SIZES[size], settings, **options
    )
