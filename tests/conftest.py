"""Session fixtures: one exported RF-DETR-Seg-Nano (random weights), one model repository,
one real tritonserver on free ports. Tests that need the server take `triton_server`."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.classes import ClassTable
from tools.build_repository import EngineShape, RepositorySettings, build_repository
from tools.tritonserver import REPO_ROOT, TritonServer

# Shared with tools.demo: both export the same seeded random-weights Nano.
ENGINE_CACHE = REPO_ROOT / "build" / "engines" / "random"
# A random-weights model scores far below 0.5; this threshold keeps a few detections per frame
# so masks, RLE and polygons are exercised end to end.
TEST_SCORE_THRESHOLD = 0.05


@pytest.fixture(scope="session")
def nano_onnx() -> tuple[Path, Path]:
    """(onnx path, class table path) of RF-DETR-Seg-Nano, exported once and cached."""
    from tools.export_onnx import export, output_paths

    onnx_path, classes_path = output_paths(ENGINE_CACHE, "nano")
    if not (onnx_path.exists() and classes_path.exists()):
        export("nano", ENGINE_CACHE)
    return onnx_path, classes_path


@pytest.fixture(scope="session")
def model_repository(nano_onnx, tmp_path_factory) -> Path:
    onnx_path, classes_path = nano_onnx
    classes = ClassTable.load(classes_path)
    settings = RepositorySettings(
        shape=EngineShape.from_onnx(onnx_path),
        max_batch_size=8,
        score_threshold=TEST_SCORE_THRESHOLD,
    )
    return build_repository(onnx_path, classes, settings, tmp_path_factory.mktemp("repo") / "models")


@pytest.fixture(scope="session")
def triton_server(model_repository, tmp_path_factory):
    server = TritonServer(model_repository, tmp_path_factory.mktemp("server") / "tritonserver.log")
    with server:
        yield server
