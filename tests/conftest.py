"""Session fixtures: one exported RF-DETR-Seg-Nano (random weights), one model repository for
the cpu target, one real tritonserver on free ports. Tests that need the server take
`triton_server`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Without a GPU, the Triton-lang kernels run in Triton's CPU interpreter. It must be chosen before
# anything imports triton: triton.language's own @jit helpers (tl.zeros...) are built at import,
# and other tests' imports (torch, rfdetr) may pull triton in long before the kernel tests run.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.repositories import build_test_repository
from tools.export_onnx import ExportedModel, random_weights_export
from tools.tritonserver import REPO_ROOT, TritonServer

# Shared with tools.demo: both export the same seeded random-weights Nano.
ENGINE_CACHE = REPO_ROOT / "build" / "engines" / "random"


@pytest.fixture(scope="session")
def nano_export() -> ExportedModel:
    """RF-DETR-Seg-Nano's ONNX, class table and weights, exported once and cached."""
    return random_weights_export("nano", ENGINE_CACHE)


@pytest.fixture(scope="session")
def model_repository(nano_export, tmp_path_factory) -> Path:
    """The cpu target's repository, with the JPEG ensemble (tests of it and of the jpeg transport)."""
    return build_test_repository(nano_export, tmp_path_factory.mktemp("repo") / "models", jpeg=True)


@pytest.fixture(scope="session")
def triton_server(model_repository, tmp_path_factory):
    server = TritonServer(model_repository, tmp_path_factory.mktemp("server") / "tritonserver.log")
    with server:
        yield server
