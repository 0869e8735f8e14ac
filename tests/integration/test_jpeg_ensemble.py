"""The JPEG ensemble on a real tritonserver: a frame sent as a JPEG file is served as the raw
ensemble serves the pixels the stage's decoder makes of it, and a file that is no JPEG fails alone,
named. On the cpu target here (OpenCV decodes); the gpu target's nvJPEG path is checked in
tests/integration/test_targets.py, on the server it builds there."""

from __future__ import annotations

import queue
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract as c
from backends.jpeg_files import encode_jpeg
from tests.integration.test_server import image_input

pytestmark = pytest.mark.integration


def jpeg_input(data: np.ndarray) -> grpcclient.InferInput:
    """The JPEG ensemble's input for one file: [1, N] bytes."""
    file = grpcclient.InferInput(c.JPEG, [1, data.size], "UINT8")
    file.set_data_from_numpy(data[None])
    return file


def camera_like_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    out = []
    for height, width in [(360, 640), (97, 131), (1080, 1920), (1, 1)]:
        frame = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
        frame[height // 3 : height // 2, width // 5 : width // 2] = (200, 40, 90)
        out.append(frame)
    return out


def assert_jpeg_serves_its_decoded_frame(url: str, decode: Callable[[np.ndarray], np.ndarray]) -> int:
    """Each frame's JPEG file through the JPEG ensemble, and `decode`(file) through the raw one:
    every output identical. Returns how many detections were compared."""
    detections = 0
    with grpcclient.InferenceServerClient(url) as client:
        for frame in camera_like_frames():
            data = encode_jpeg(frame)
            from_jpeg = client.infer(c.JPEG_ENSEMBLE, [jpeg_input(data)])
            from_pixels = client.infer(c.ENSEMBLE, [image_input(decode(data))])
            for spec in c.ENSEMBLE_OUTPUTS:
                assert np.array_equal(from_jpeg.as_numpy(spec.name), from_pixels.as_numpy(spec.name)), spec.name
            assert from_jpeg.as_numpy(c.IMAGE_SIZE).tolist() == [list(frame.shape[:2])]
            detections += from_jpeg.as_numpy(c.SCORES).shape[1]
    return detections


def test_a_jpeg_file_serves_what_its_decoded_pixels_serve(triton_server):
    detections = assert_jpeg_serves_its_decoded_frame(
        triton_server.grpc_url, lambda data: cv2.imdecode(data, cv2.IMREAD_COLOR)
    )
    assert detections > 0  # else the comparison proved nothing


@pytest.mark.parametrize(
    "data, message",
    [
        (cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].reshape(-1), "not a JPEG file"),
        (encode_jpeg(np.zeros((64, 64, 3), np.uint8))[:40], "JPEG file is truncated"),
    ],
    ids=["png", "truncated"],
)
def test_a_bad_file_fails_alone_and_named_beside_good_ones(triton_server, data, message):
    good = encode_jpeg(camera_like_frames()[0])
    completions: queue.SimpleQueue = queue.SimpleQueue()
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        for index, file in enumerate([good, data, good]):  # in flight together: one batch or more
            client.async_infer(
                c.JPEG_ENSEMBLE, [jpeg_input(file)], lambda result, error, i=index: completions.put((i, result, error))
            )
        outcomes = {i: (result, error) for i, result, error in (completions.get(timeout=60) for _ in range(3))}
    for index in (0, 2):
        result, error = outcomes[index]
        assert error is None and result.as_numpy(c.IMAGE_SIZE).tolist() == [[360, 640]]
    result, error = outcomes[1]
    assert result is None and isinstance(error, InferenceServerException)
    assert message in str(error) and "INVALID_ARG" in str(error.status()), error


def test_a_request_of_two_files_is_refused(triton_server):
    data = encode_jpeg(camera_like_frames()[1])
    both = grpcclient.InferInput(c.JPEG, [2, data.size], "UINT8")
    both.set_data_from_numpy(np.stack([data, data]))
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        with pytest.raises(InferenceServerException, match=r"input 'jpeg' .* Expected \[1,-1\], got \[2,"):
            client.infer(c.JPEG_ENSEMBLE, [both])
        # Sent to the stage itself, two files are two batch items of one request: refused there.
        with pytest.raises(InferenceServerException, match=r"send one JPEG file per request \(\[1, N\] bytes\)"):
            client.infer(c.PREPROCESS_JPEG, [both])
