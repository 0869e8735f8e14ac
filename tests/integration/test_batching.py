"""Every stage serves a whole batch per execute: concurrent requests of different frame sizes
share one preprocess and one postprocess execution, each response is its own frame's reference
result, and a bad frame inside a batch fails alone.

Deterministic, not a race: the repository's batchers hold requests for up to 3 s and fire as
soon as a batch of 4 is full, so 4 concurrent requests always form one batch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract as c
from clients.results import result_from_response
from clients.server_stats import read_counters, stats_since
from tests.repositories import build_test_repository
from tests.integration.test_server import assert_same_detections, image_input, reference_pipeline
from tools.tritonserver import TritonServer

pytestmark = pytest.mark.integration
BATCH = 4
SIZES = [(360, 640), (97, 131), (1080, 1920), (480, 270)]
STAGES = (c.PREPROCESS, c.ENGINE, c.POSTPROCESS)


@pytest.fixture(scope="module")
def batching_server(nano_export, tmp_path_factory):
    work = tmp_path_factory.mktemp("batching")
    repository = build_test_repository(
        nano_export, work / "models", max_batch_size=BATCH, queue_delay_us=3_000_000
    )
    with TritonServer(repository, work / "tritonserver.log") as server:
        yield server


def frame_of(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame[height // 4 : height // 2, width // 4 : width // 2] = (30, 200, 90)
    return frame


def infer_concurrently(url: str, frames: list[np.ndarray]) -> list:
    """Sends every frame at once, each from its own client; a result or the exception per frame."""

    def infer(frame):
        with grpcclient.InferenceServerClient(url) as own:
            try:
                return result_from_response(own.infer(c.ENSEMBLE, [image_input(frame)], client_timeout=60))
            except InferenceServerException as error:
                return error

    with ThreadPoolExecutor(len(frames)) as pool:
        return list(pool.map(infer, frames))


def test_mixed_frame_sizes_share_one_execution_per_stage(batching_server, nano_export):
    frames = [frame_of(h, w, seed) for seed, (h, w) in enumerate(SIZES)]
    with grpcclient.InferenceServerClient(batching_server.grpc_url) as client:
        before = read_counters(client, STAGES)
        results = infer_concurrently(batching_server.grpc_url, frames)
        stats = stats_since(client, before, served=BATCH)
    for stage in stats:
        inferences, executions = stage.inference_count, stage.execution_count
        assert (inferences, executions) == (BATCH, 1), f"{stage.model}: {inferences} inferences in {executions} executions"
    reference = reference_pipeline(nano_export)
    for frame, served in zip(frames, results):
        assert not isinstance(served, Exception), served
        assert_same_detections(served, reference(frame))


def test_bad_frame_in_a_batch_fails_alone(batching_server, nano_export):
    good = [frame_of(h, w, seed) for seed, (h, w) in enumerate(SIZES[: BATCH - 1])]
    empty = np.zeros((0, 5, 3), np.uint8)
    with grpcclient.InferenceServerClient(batching_server.grpc_url) as client:
        before = read_counters(client, (c.PREPROCESS,))
        results = infer_concurrently(batching_server.grpc_url, [good[0], empty, *good[1:]])
        (preprocess,) = stats_since(client, before, served=len(good))
        assert preprocess.execution_count == 1, "the four requests were not one batch"
    failed = results.pop(1)
    assert isinstance(failed, InferenceServerException)
    assert "image is empty: 0x5" in str(failed)
    reference = reference_pipeline(nano_export)
    for frame, served in zip(good, results):
        assert not isinstance(served, Exception), served
        assert_same_detections(served, reference(frame))
