"""Frame transports: the inputs they build, and the shared-memory ring's life on the server."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from backends import contract
from backends.frames import InvalidImageError
from backends.jpeg_files import JPEG_QUALITY
from clients.results import result_from_response
from clients.transports import (
    JpegGrpcTransport,
    PlainGrpcTransport,
    SystemShmTransport,
    make_transport,
    unregister_when_released,
)

(IMAGE_SPEC,) = contract.ENSEMBLE_INPUTS


def fits_the_contract(shape: list[int]) -> bool:
    return len(shape) == len(IMAGE_SPEC.dims) and all(
        dim == -1 or dim == size for dim, size in zip(IMAGE_SPEC.dims, shape, strict=True)
    )


def test_plain_input_carries_the_frame_under_a_batch_axis_of_one():
    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (image,) = PlainGrpcTransport().inputs_for(0, frame)
    assert image.name() == IMAGE_SPEC.name == contract.IMAGE
    assert image.shape() == [1, 5, 7, 3]
    assert fits_the_contract(image.shape())
    assert image.datatype() == IMAGE_SPEC.dtype == "UINT8"
    assert image._get_content() == frame.tobytes()


def test_plain_input_of_a_non_contiguous_frame_carries_its_pixels():
    frame = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)[:, ::2]
    (image,) = PlainGrpcTransport().inputs_for(0, frame)
    assert image.shape() == [1, 6, 4, 3]
    assert image._get_content() == np.ascontiguousarray(frame).tobytes()


def test_jpeg_input_carries_the_frame_as_one_jpeg_file():
    frame = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2)
    (file,) = JpegGrpcTransport().inputs_for(0, frame)
    (spec,) = contract.JPEG_ENSEMBLE_INPUTS
    assert (file.name(), file.datatype()) == (spec.name, spec.dtype) == (contract.JPEG, "UINT8")
    data = np.frombuffer(file._get_content(), np.uint8)
    assert file.shape() == [1, data.size]
    expected = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].reshape(-1)
    assert np.array_equal(data, expected)
    assert np.abs(cv2.imdecode(data, cv2.IMREAD_COLOR).astype(int) - frame).mean() < 4  # the same picture


def test_jpeg_transport_refuses_a_frame_that_is_not_bgr_uint8():
    with pytest.raises(InvalidImageError, match="HxWx3"):
        JpegGrpcTransport().inputs_for(0, np.zeros((4, 4), np.uint8))


class RegistryClient:
    """A client stand-in (test fake) that records system shared-memory registrations."""

    def __init__(self):
        self.registered: dict[str, tuple[str, int]] = {}

    def register_system_shared_memory(self, name, key, byte_size):
        self.registered[name] = (key, byte_size)

    def unregister_system_shared_memory(self, name):
        del self.registered[name]


def test_shm_input_names_the_region_with_the_frame_bytes_in_it():
    frame = np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    client = RegistryClient()
    with SystemShmTransport(client, depth=2, byte_size=1024) as transport:
        (image,) = transport.inputs_for(1, frame)
        region = transport.regions[1]
        assert image.shape() == [1, 6, 8, 3]
        assert fits_the_contract(image.shape())
        assert image.datatype() == "UINT8"
        parameters = image._get_tensor().parameters
        assert parameters["shared_memory_region"].string_param == region.name
        # The batch axis of 1 adds no bytes: the region holds the frame as it is.
        assert parameters["shared_memory_byte_size"].int64_param == frame.nbytes
        assert image._get_content() is None
        stored = shm.get_contents_as_numpy(region.handle, np.uint8, [1, 6, 8, 3])
        np.testing.assert_array_equal(stored[0], frame)
        assert set(client.registered) == {r.name for r in transport.regions}
    assert client.registered == {}


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), "HxWx3"),
        (np.zeros((1, 4, 4, 3), np.uint8), "HxWx3"),  # the transport adds the batch axis itself
        (np.zeros((0, 5, 3), np.uint8), "empty: 0x5"),
    ],
)
def test_a_frame_that_is_not_bgr_uint8_is_rejected_by_name(frame, problem):
    with pytest.raises(InvalidImageError, match=problem):
        PlainGrpcTransport().inputs_for(0, frame)


def test_unknown_transport_kind_is_named():
    with pytest.raises(ValueError, match="unknown transport 'cuda_shm'"):
        make_transport("cuda_shm", None, 2)


@pytest.fixture(scope="module")
def client(triton_server):
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        yield client


def registered(client) -> dict[str, int]:
    """Region name -> byte size, as the server reports its system shared memory."""
    regions = client.get_system_shared_memory_status(as_json=True).get("regions", {})
    return {name: int(region["byte_size"]) for name, region in regions.items()}


@pytest.mark.integration
def test_ring_is_registered_uniquely_and_released_on_close(client):
    with SystemShmTransport(client, depth=3, byte_size=1024) as first:
        second = SystemShmTransport(client, depth=1, byte_size=512)
        names = [region.name for region in first.regions + second.regions]
        assert len(set(names)) == 4
        assert all(f"_{os.getpid()}_" in name for name in names)
        assert {n: registered(client)[n] for n in names} == dict(
            zip(names, [1024] * 3 + [512], strict=True)
        )
        second.close()
        second.close()  # twice is harmless
        assert not set(names[3:]) & set(registered(client))
    assert not set(names) & set(registered(client))


@pytest.mark.integration
def test_ring_is_released_when_the_body_fails(client):
    with pytest.raises(RuntimeError, match="camera unplugged"):
        with SystemShmTransport(client, depth=2, byte_size=256) as transport:
            names = [region.name for region in transport.regions]
            raise RuntimeError("camera unplugged")
    assert not set(names) & set(registered(client))


@pytest.mark.integration
def test_a_bigger_frame_grows_its_region_and_arrives_whole(client):
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with SystemShmTransport(client, depth=2, byte_size=1024) as transport:
        small, other = (region.name for region in transport.regions)
        inputs = transport.inputs_for(0, frame)
        grown = transport.regions[0]
        assert grown.name != small
        assert grown.byte_size == frame.nbytes
        assert transport.regions[1].name == other
        assert registered(client).get(grown.name) == frame.nbytes
        assert small not in registered(client)
        served = result_from_response(client.infer(contract.ENSEMBLE, inputs))
    plain = result_from_response(
        client.infer(contract.ENSEMBLE, PlainGrpcTransport().inputs_for(0, frame))
    )
    # The same pixels went through both paths: the same detections come back.
    assert served.image_size == (120, 160)
    assert len(served) == len(plain) > 0
    np.testing.assert_allclose(served.scores, plain.scores, atol=1e-4)
    assert served.rle_counts == plain.rle_counts


@pytest.mark.integration
def test_regions_the_server_lost_are_registered_again(client):
    frame = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with SystemShmTransport(client, depth=2, byte_size=frame.nbytes) as transport:
        names = [region.name for region in transport.regions]
        # What a restarted server knows of them: nothing.
        for name in names:
            client.unregister_system_shared_memory(name)
        with pytest.raises(InferenceServerException, match="Unable to find shared memory region"):
            client.infer(contract.ENSEMBLE, transport.inputs_for(0, frame))
        transport.register_again()
        assert {n: registered(client)[n] for n in names} == dict.fromkeys(names, frame.nbytes)
        assert result_from_response(
            client.infer(contract.ENSEMBLE, transport.inputs_for(0, frame))
        ).image_size == (48, 64)
        transport.register_again()  # regions the server still holds are left as they are
        assert {n: registered(client)[n] for n in names} == dict.fromkeys(names, frame.nbytes)
    assert not set(names) & set(registered(client))


@pytest.mark.integration
def test_slot_outside_the_ring_and_bad_frames_are_named(client):
    with SystemShmTransport(client, depth=2, byte_size=1024) as transport:
        with pytest.raises(IndexError, match="slot 2 outside the ring of 2"):
            transport.inputs_for(2, np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            transport.inputs_for(0, np.zeros((4, 4, 3), np.float64))


class RegionInUseOnce:
    """A client stand-in (test fake) whose first unregister finds the region still in use."""

    def __init__(self, message: str):
        self.calls = 0
        self.message = message

    def unregister_system_shared_memory(self, name):
        self.calls += 1
        if self.calls == 1:
            raise InferenceServerException(self.message)


def test_unregister_waits_while_the_server_still_holds_the_region():
    fake = RegionInUseOnce("Cannot unregister shared memory region 'r', it is currently in use.")
    unregister_when_released(fake, "r")
    assert fake.calls == 2


def test_unregister_raises_other_errors_at_once():
    fake = RegionInUseOnce("Unable to find system shared memory region: 'r'")
    with pytest.raises(InferenceServerException, match="Unable to find"):
        unregister_when_released(fake, "r")
    assert fake.calls == 1
