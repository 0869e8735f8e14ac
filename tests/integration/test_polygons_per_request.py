"""Polygons per request on the real ensemble (cpu target: the reference; gpu target, with a CUDA
device: the kernels): a client's `polygons` request
parameter chooses for its own frame, over the deployment's default, inside one batch of
requests with different choices; the masks are the same either way; a value that is no bool
fails its request alone, naming the parameter.

Every frame keeps its top NUM_SELECT detections (score threshold 0; those of classes without a
name dropped): random weights put scores near the usual threshold, where FP16 on the gpu target
may leave a small frame with none.

Deterministic, not a race: the batchers hold requests for up to 3 s and fire as soon as a batch
of 4 is full, so 4 concurrent requests always form one batch (as tests/integration/test_batching).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract as c
from backends.rle import decode_mask
from clients.results import result_from_response
from clients.server_stats import read_counters, stats_since
from tests.integration.test_batching import frame_of
from tests.integration.test_server import image_input
from tests.repositories import build_test_repository
from tools.targets import TARGETS
from tools.tritonserver import TritonServer

pytestmark = pytest.mark.integration
BATCH = 4
NUM_SELECT = 10


NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="the gpu target needs a CUDA device")


@pytest.fixture(scope="module", params=["cpu", pytest.param("gpu", marks=NEEDS_CUDA)])
def server_without_polygons(request, nano_export, tmp_path_factory):
    """A deployment whose default is no polygons (build_repository --no-polygons)."""
    target = request.param
    work = tmp_path_factory.mktemp(f"polygons_per_request_{target}")
    repository = build_test_repository(
        nano_export,
        work / "models",
        target=target,
        max_batch_size=BATCH,
        queue_delay_us=3_000_000,
        polygons=False,
        score_threshold=0.0,
        num_select=NUM_SELECT,
    )
    with TritonServer.for_target(repository, work / "tritonserver.log", TARGETS[target]) as server:
        yield server


def infer_concurrently(url: str, requests: list[tuple[np.ndarray, dict | None]]) -> list:
    """Sends every (frame, parameters) at once, each from its own client; a result or the
    exception per request."""

    def infer(request):
        frame, parameters = request
        with grpcclient.InferenceServerClient(url) as own:
            try:
                response = own.infer(c.ENSEMBLE, [image_input(frame)], parameters=parameters, client_timeout=60)
                return result_from_response(response)
            except InferenceServerException as error:
                return error

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(infer, requests))


def test_each_request_of_one_batch_gets_polygons_as_it_asked(server_without_polygons):
    one, two = frame_of(360, 640, seed=1), frame_of(97, 131, seed=2)
    asked = [
        (one, None),
        (one, {c.POLYGONS_PARAMETER: True}),
        (two, {c.POLYGONS_PARAMETER: True}),
        (two, {c.POLYGONS_PARAMETER: False}),
    ]
    with grpcclient.InferenceServerClient(server_without_polygons.grpc_url) as client:
        before = read_counters(client, (c.POSTPROCESS,))
        default, one_with, two_with, two_without = infer_concurrently(server_without_polygons.grpc_url, asked)
        (postprocess,) = stats_since(client, before, served=BATCH)
    assert (postprocess.inference_count, postprocess.execution_count) == (BATCH, 1)
    for with_polygons, without in ((one_with, default), (two_with, two_without)):
        assert not isinstance(with_polygons, Exception) and not isinstance(without, Exception)
        assert 0 < len(with_polygons) <= NUM_SELECT
        assert without.rle_counts == with_polygons.rle_counts
        assert without.class_ids.tolist() == with_polygons.class_ids.tolist()
        assert all(len(p) == 0 for p in without.polygons)
        height, width = with_polygons.image_size
        drawn = [decode_mask(counts, height, width).any() for counts in with_polygons.rle_counts]
        assert any(drawn)
        assert [len(p) > 0 for p in with_polygons.polygons] == drawn  # a polygon for every non-empty mask


@pytest.mark.parametrize("value", ["no", 1])
def test_a_polygons_parameter_that_is_no_bool_fails_its_request_alone(server_without_polygons, value):
    frame = frame_of(360, 640, seed=3)
    asked = [(frame, {c.POLYGONS_PARAMETER: value})] + [(frame, {c.POLYGONS_PARAMETER: True})] * (BATCH - 1)
    bad, *good = infer_concurrently(server_without_polygons.grpc_url, asked)
    assert isinstance(bad, InferenceServerException), bad
    assert bad.status() == "StatusCode.INVALID_ARGUMENT", bad
    assert f"request parameter 'polygons' must be a bool (true or false), got {value!r}" in bad.message(), bad
    assert all(not isinstance(result, Exception) and 0 < len(result) <= NUM_SELECT for result in good), good
