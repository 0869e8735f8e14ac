"""Session fixtures: one exported RF-DETR-Seg-Nano (random weights), one model repository,
one real tritonserver on free ports. Tests that need the server take `triton_server`."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.classes import ClassTable
from tools.build_repository import EngineShape, RepositorySettings, build_repository
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, random_weights_export
from tools.tritonserver import REPO_ROOT, TritonServer

# Shared with tools.demo: both export the same seeded random-weights Nano.
ENGINE_CACHE = REPO_ROOT / "build" / "engines" / "random"


@pytest.fixture(scope="session")
def nano_onnx() -> tuple[Path, Path]:
    """(onnx path, class table path) of RF-DETR-Seg-Nano, exported once and cached."""
    return random_weights_export("nano", ENGINE_CACHE)


@pytest.fixture(scope="session")
def model_repository(nano_onnx, tmp_path_factory) -> Path:
    onnx_path, classes_path = nano_onnx
    classes = ClassTable.load(classes_path)
    settings = RepositorySettings(
        shape=EngineShape.from_onnx(onnx_path),
        max_batch_size=8,
        score_threshold=RANDOM_WEIGHTS_THRESHOLD,
    )
    return build_repository(onnx_path, classes, settings, tmp_path_factory.mktemp("repo") / "models")


@pytest.fixture(scope="session")
def triton_server(model_repository, tmp_path_factory):
    server = TritonServer(model_repository, tmp_path_factory.mktemp("server") / "tritonserver.log")
    with server:
        yield server
