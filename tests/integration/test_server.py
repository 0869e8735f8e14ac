"""The real tritonserver serving the real ensemble, checked against the in-process reference.

Frames go over plain gRPC and through system shared memory; bad requests must come back as
errors naming the problem, and the server must serve the next good request.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from backends import contract as c
from backends.classes import ClassTable
from backends.pipeline import ReferencePipeline
from backends.postprocess_settings import PostprocessSettings
from backends.results import SegmentationResult
from backends.rle import decode_mask
from clients.results import result_from_response
from clients.transports import unregister_when_released
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD

pytestmark = pytest.mark.integration
_region_ids = itertools.count()


def frames():
    rng = np.random.default_rng(42)
    for height, width in [(360, 640), (97, 131), (1, 1), (1080, 1920)]:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame[height // 4 : height // 2, width // 4 : width // 2] = (30, 200, 90)
        yield frame


@pytest.fixture(scope="module")
def client(triton_server):
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def reference(nano_export):
    return reference_pipeline(nano_export)


def reference_pipeline(exported) -> ReferencePipeline:
    settings = PostprocessSettings(100, RANDOM_WEIGHTS_THRESHOLD, ClassTable.load(exported.classes))
    return ReferencePipeline(exported.onnx, settings)


def image_input(frame: np.ndarray) -> grpcclient.InferInput:
    """The ensemble's input for one frame: [1, H, W, 3]."""
    image = grpcclient.InferInput(c.IMAGE, [1, *frame.shape], "UINT8")
    image.set_data_from_numpy(frame[None])
    return image


def assert_same_detections(served: SegmentationResult, expected: SegmentationResult) -> None:
    """Every detection matched; masks compared by IoU (the engine may batch requests, which
    can move float results in the last bits), and differences counted."""
    assert served.image_size == expected.image_size
    assert len(served) == len(expected), (len(served), len(expected))
    assert served.class_ids.tolist() == expected.class_ids.tolist()
    assert served.class_names == expected.class_names
    np.testing.assert_allclose(served.scores, expected.scores, atol=1e-4)
    np.testing.assert_allclose(served.boxes, expected.boxes, atol=0.05)
    height, width = served.image_size
    for ours, theirs in zip(served.rle_counts, expected.rle_counts):
        a, b = decode_mask(ours, height, width), decode_mask(theirs, height, width)
        union = np.logical_or(a, b).sum()
        assert union == 0 or np.logical_and(a, b).sum() / union >= 0.99


@pytest.mark.parametrize("frame", list(frames()), ids=lambda f: f"{f.shape[0]}x{f.shape[1]}")
def test_plain_grpc_matches_reference(client, reference, frame):
    served = result_from_response(client.infer(c.ENSEMBLE, [image_input(frame)]))
    expected = reference(frame)
    assert len(expected) > 0 or frame.shape[:2] == (1, 1)
    assert_same_detections(served, expected)
    height, width = served.image_size
    for counts, polygon in zip(served.rle_counts, served.polygons):
        # A detection's mask can be empty at the frame's size (a 1x1 frame); then so is its polygon.
        assert (len(polygon) > 0) == decode_mask(counts, height, width).any()


class SystemShmRegion:
    """A registered system shared-memory region, cleaned up on exit."""

    def __init__(self, client, byte_size: int):
        self.client = client
        self.name = f"test_frame_{os.getpid()}_{next(_region_ids)}"
        self.byte_size = byte_size
        self.handle = shm.create_shared_memory_region(self.name, "/" + self.name, byte_size)
        client.register_system_shared_memory(self.name, "/" + self.name, byte_size)

    def input_for(self, frame: np.ndarray) -> grpcclient.InferInput:
        shm.set_shared_memory_region(self.handle, [frame])
        image = grpcclient.InferInput(c.IMAGE, [1, *frame.shape], "UINT8")
        image.set_shared_memory(self.name, frame.nbytes)
        return image

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        unregister_when_released(self.client, self.name)
        shm.destroy_shared_memory_region(self.handle)


def test_system_shared_memory_matches_reference(client, reference):
    frame = next(frames())
    with SystemShmRegion(client, frame.nbytes) as region:
        served = result_from_response(client.infer(c.ENSEMBLE, [region.input_for(frame)]))
    assert_same_detections(served, reference(frame))


def test_dynamic_batching_groups_concurrent_frames(triton_server, reference):
    def engine_counts(client):
        stats = client.get_inference_statistics(c.ENGINE, as_json=True)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])

    frame = next(frames())
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        before = engine_counts(client)

        def infer(_):
            with grpcclient.InferenceServerClient(triton_server.grpc_url) as own:
                return result_from_response(own.infer(c.ENSEMBLE, [image_input(frame)]))

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(infer, range(6)))
        after = engine_counts(client)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 6
    assert executions < inferences, "the engine ran every frame alone: dynamic batching is off"
    for served in results:
        assert_same_detections(served, reference(frame))


def good_request_still_served(client) -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    assert result_from_response(client.infer(c.ENSEMBLE, [image_input(frame)])).image_size == (8, 8)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((1, 4, 4, 3), np.float32), "(?i)data.?type.*image|image.*data.?type"),
        (np.zeros((4, 4, 3), np.uint8), "(?i)shape.*image|image.*shape"),
        (np.zeros((1, 4, 4, 3, 1), np.uint8), "(?i)shape.*image|image.*shape"),
        (np.zeros((1, 4, 4, 4), np.uint8), "(?i)shape.*image|image.*shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "(?i)shape.*image|image.*shape"),
        (np.zeros((1, 0, 5, 3), np.uint8), "image is empty: 0x5"),
    ],
    ids=["fp32", "rank3", "rank5", "4-channels", "two-frames", "zero-size"],
)
def test_bad_frame_is_rejected_naming_the_problem(client, data, message):
    image = grpcclient.InferInput(c.IMAGE, list(data.shape), "FP32" if data.dtype == np.float32 else "UINT8")
    image.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException, match=message):
        client.infer(c.ENSEMBLE, [image])
    good_request_still_served(client)


def test_unregistered_shared_memory_region_is_rejected_by_name(client):
    image = grpcclient.InferInput(c.IMAGE, [1, 4, 4, 3], "UINT8")
    image.set_shared_memory("no_such_region", 48)
    with pytest.raises(InferenceServerException, match="no_such_region"):
        client.infer(c.ENSEMBLE, [image])
    good_request_still_served(client)


def test_frame_bigger_than_its_region_is_rejected(client):
    frame = np.zeros((16, 16, 3), np.uint8)
    with SystemShmRegion(client, 64) as region:
        image = grpcclient.InferInput(c.IMAGE, [1, *frame.shape], "UINT8")
        image.set_shared_memory(region.name, frame.nbytes)
        with pytest.raises(InferenceServerException, match=region.name):
            client.infer(c.ENSEMBLE, [image])
    good_request_still_served(client)
