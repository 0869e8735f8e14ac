"""What tritonserver 2.51 does with an ensemble request's parameters, on a two-step ensemble of
tiny python models (no RF-DETR): every step's request carries them, so the last step's
request.parameters() holds the client's; requests with different parameters still share one
execution of the batching step. The postprocess's per-request `polygons` relies on this (core
PR #261, "Forward ensemble request parameters to composing models", merged September 2023;
before it composing models saw {}: server issues #6127 and #7008, both on 23.07)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tools.tritonserver import TritonServer

pytestmark = pytest.mark.integration
BATCH = 4

# Step 1 passes its input on; step 2 answers with its request's parameters (JSON, as UTF-8).
PASS_ON = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "x").to_dlpack() for r in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("y", x)]) for x in inputs]
"""
ECHO_PARAMETERS = """
import torch
import triton_python_backend_utils as pb_utils

from backends.triton_model import output_tensor


class TritonPythonModel:
    def execute(self, requests):
        pb_utils.Logger.log_info(f"one execution of {len(requests)} requests")
        texts = [torch.tensor(list(r.parameters().encode()), dtype=torch.uint8)[None] for r in requests]
        return [pb_utils.InferenceResponse([output_tensor("parameters", t)]) for t in texts]
"""
STEP_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {batch}
input [ {{ name: "{input}" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "{output}" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 3000000 preferred_batch_size: [ {batch} ] }}
"""
ENSEMBLE_CONFIG = """
name: "chain"
platform: "ensemble"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_UINT8 dims: [ 1, -1 ] } ]
output [ { name: "parameters" data_type: TYPE_UINT8 dims: [ 1, -1 ] } ]
ensemble_scheduling { step [
  { model_name: "pass_on" model_version: -1
    input_map { key: "x" value: "x" } output_map { key: "y" value: "y" } },
  { model_name: "echo_parameters" model_version: -1
    input_map { key: "y" value: "y" } output_map { key: "parameters" value: "parameters" } }
] }
"""


def write_repository(root: Path) -> Path:
    models = {
        "pass_on": (STEP_CONFIG.format(name="pass_on", batch=BATCH, input="x", output="y"), PASS_ON),
        "echo_parameters": (
            STEP_CONFIG.format(name="echo_parameters", batch=BATCH, input="y", output="parameters"),
            ECHO_PARAMETERS,
        ),
        "chain": (ENSEMBLE_CONFIG, None),
    }
    for name, (config, code) in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        if code is not None:
            (root / name / "1" / "model.py").write_text(code)
    return root


@pytest.fixture(scope="module")
def chain_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("ensemble_parameters")
    with TritonServer(write_repository(work / "models"), work / "tritonserver.log") as server:
        yield server


def parameters_seen(url: str, parameters: dict | None) -> dict:
    """What the ensemble's last step found in its request.parameters()."""
    with grpcclient.InferenceServerClient(url) as client:
        x = grpcclient.InferInput("x", [1, 3], "UINT8")
        x.set_data_from_numpy(np.zeros((1, 3), np.uint8))
        response = client.infer("chain", [x], parameters=parameters, client_timeout=60)
    return json.loads(response.as_numpy("parameters").tobytes())


def test_a_composing_model_sees_the_ensemble_requests_parameters(chain_server):
    """Four concurrent requests, four sets of parameters, one execution of the last step (the
    batcher fires at 4): each request keeps its own, typed as the client sent them."""
    sent = [{"polygons": False}, None, {"polygons": True, "n": 3}, {"polygons": "no"}]
    with ThreadPoolExecutor(BATCH) as pool:
        seen = list(pool.map(lambda p: parameters_seen(chain_server.grpc_url, p), sent))
    assert seen == [{"polygons": False}, {}, {"polygons": True, "n": 3}, {"polygons": "no"}]
    log = Path(chain_server.log_path).read_text()
    assert f"one execution of {BATCH} requests" in log, chain_server.log_tail()
