"""The CUDA shared-memory transport: its clear refusal where tritonclient's CUDA support is missing
and its argument checks (any host); its ring's life, with tritonclient's CUDA module replaced by a
fake (any host); and, on a GPU, frames streamed through a real tritonserver giving what plain gRPC
gives, regions gone from the server afterwards. The restart test is test_server_outage's."""

from __future__ import annotations

import base64
import sys
import types

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from clients import stream_video
from clients.stream import stream_frames
from clients.transports import (
    TRANSPORT_KINDS,
    CudaShmTransport,
    PlainGrpcTransport,
    TransportUnavailable,
    cuda_shared_memory,
    make_transport,
)
from tests.integration.test_server import assert_same_detections
from tools.make_sample_video import render_frames

CUDA_SHM = "tritonclient.utils.cuda_shared_memory"


def cuda_shm_importable() -> bool:
    try:
        cuda_shared_memory()
    except TransportUnavailable:
        return False
    return True


needs_cuda_shm = pytest.mark.skipif(
    not (torch.cuda.is_available() and cuda_shm_importable()),
    reason="CUDA shared memory needs a GPU and tritonclient's CUDA support (cuda-bindings)",
)


@pytest.fixture
def without_cuda_bindings(monkeypatch):
    """A fake host without cuda-bindings: importing it fails, so tritonclient's CUDA module
    fails its own import as it does there."""
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.bindings.driver"):
        monkeypatch.setitem(sys.modules, name, None)
    for name in [n for n in sys.modules if n == CUDA_SHM or n.startswith(CUDA_SHM + ".")]:
        monkeypatch.delitem(sys.modules, name)


class UnusedClient:
    """A client stand-in (test fake) that fails the test if the transport reaches the server."""

    def __getattr__(self, name):
        raise AssertionError(f"the transport called client.{name} although it could not start")


def test_cuda_is_a_transport_kind():
    assert TRANSPORT_KINDS == ("grpc", "jpeg", "system_shm", "cuda")


def test_without_cuda_bindings_the_transport_names_what_is_missing(without_cuda_bindings):
    with pytest.raises(TransportUnavailable) as error:
        make_transport("cuda", UnusedClient(), 2)
    message = str(error.value)
    assert "cuda-bindings (cuda-python)" in message
    assert "pip install 'tritonclient[cuda]'" in message
    assert "server on this host and this GPU" in message
    assert "system_shm" in message and "grpc" in message
    assert isinstance(error.value, ValueError), "the option is what has to change"


def test_without_the_module_the_transport_names_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, CUDA_SHM, None)  # a fake tritonclient without it
    with pytest.raises(TransportUnavailable, match="cuda-bindings"):
        CudaShmTransport(UnusedClient())


@pytest.mark.parametrize("command", ["stream_video", "streams"])
def test_the_clis_refuse_cuda_without_bindings_before_anything_runs(
    without_cuda_bindings, tmp_path, capsys, command
):
    from clients import streams

    out = tmp_path / "out"
    source = ["--video", "in.mp4"] if command == "stream_video" else ["--source", "in.mp4"]
    main = stream_video.main if command == "stream_video" else streams.main
    with pytest.raises(SystemExit) as exit_info:
        main([*source, "--transport", "cuda", "--out-dir", str(out), "--url", "localhost:1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "transport cuda needs" in err and "cuda-bindings" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"depth": 0}, "depth and byte_size must be >= 1, got depth=0"),
        ({"byte_size": 0}, "byte_size=0"),
        ({"device_id": -1}, "device_id must be a GPU index >= 0, got -1"),
    ],
)
def test_nonsensical_arguments_are_refused_before_any_gpu_memory(arguments, problem):
    with pytest.raises(ValueError, match=problem):
        CudaShmTransport(UnusedClient(), **arguments)


class FakeCudaSharedMemory(types.ModuleType):
    """tritonclient.utils.cuda_shared_memory stand-in (test fake): device memory as bytearrays,
    what was written and freed recorded. `fail_after` allocations succeed, the next fails."""

    class CudaSharedMemoryException(Exception):
        pass

    def __init__(self, fail_after: int | None = None):
        super().__init__(CUDA_SHM)
        self.fail_after = fail_after
        self.allocated: dict[str, tuple[int, int]] = {}  # name -> (byte size, device)
        self.memory: dict[str, bytearray] = {}
        self.from_dlpack: list[str] = []

    def create_shared_memory_region(self, name, byte_size, device_id):
        if self.fail_after is not None and len(self.allocated) >= self.fail_after:
            raise self.CudaSharedMemoryException("unable to create cuda shared memory handle")
        self.allocated[name] = (byte_size, device_id)
        self.memory[name] = bytearray(byte_size)
        return name

    def get_raw_handle(self, handle):
        return base64.b64encode(f"ipc:{handle}".encode())

    def set_shared_memory_region(self, handle, values):
        data = b"".join(np.ascontiguousarray(v).tobytes() for v in values)
        self.memory[handle][: len(data)] = data

    def set_shared_memory_region_from_dlpack(self, handle, values):
        self.from_dlpack.append(handle)
        self.set_shared_memory_region(handle, [np.from_dlpack(v) for v in values])

    def destroy_shared_memory_region(self, handle):
        del self.allocated[handle], self.memory[handle]


class CudaRegistryClient:
    """A client stand-in (test fake) that records CUDA shared-memory registrations."""

    def __init__(self):
        self.registered: dict[str, tuple[bytes, int, int]] = {}

    def register_cuda_shared_memory(self, name, raw_handle, device_id, byte_size):
        self.registered[name] = (raw_handle, device_id, byte_size)

    def unregister_cuda_shared_memory(self, name):
        del self.registered[name]


class DeviceFrame:
    """A stand-in (test fake) for a device tensor: shape, dtype and DLPack, no numpy type."""

    def __init__(self, array: np.ndarray):
        self._array = array
        self.shape, self.dtype = array.shape, array.dtype

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_the_ring_registers_writes_grows_and_frees_cuda_regions(monkeypatch):
    fake = FakeCudaSharedMemory()
    monkeypatch.setitem(sys.modules, CUDA_SHM, fake)
    client = CudaRegistryClient()
    frame = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    with CudaShmTransport(client, depth=2, byte_size=64, device_id=1) as transport:
        names = [region.name for region in transport.regions]
        assert client.registered == {
            name: (base64.b64encode(f"ipc:{name}".encode()), 1, 64) for name in names
        }
        assert fake.allocated == dict.fromkeys(names, (64, 1))

        (image,) = transport.inputs_for(1, frame)  # 144 B: slot 1 grows, slot 0 stays
        grown = transport.regions[1]
        assert transport.regions[0].name == names[0]
        assert grown.name not in names and grown.byte_size == frame.nbytes
        assert set(client.registered) == set(fake.allocated) == {names[0], grown.name}
        assert image.shape() == [1, 6, 8, 3]
        parameters = image._get_tensor().parameters
        assert parameters["shared_memory_region"].string_param == grown.name
        assert parameters["shared_memory_byte_size"].int64_param == frame.nbytes
        assert bytes(fake.memory[grown.name]) == frame.tobytes()

        other = frame[::-1].copy()
        transport.inputs_for(0, DeviceFrame(other[:2]))  # 48 B: fits slot 0 as it is
        assert fake.from_dlpack == [names[0]]
        assert bytes(fake.memory[names[0]][:48]) == other[:2].tobytes()
    assert client.registered == {} and fake.allocated == {}


def test_gpu_memory_that_cannot_be_allocated_is_named_and_nothing_is_left(monkeypatch):
    fake = FakeCudaSharedMemory(fail_after=1)
    monkeypatch.setitem(sys.modules, CUDA_SHM, fake)
    client = CudaRegistryClient()
    with pytest.raises(TransportUnavailable, match="cannot allocate 64 B of CUDA shared memory"):
        CudaShmTransport(client, depth=2, byte_size=64)
    assert client.registered == {} and fake.allocated == {}


def cuda_regions(client: grpcclient.InferenceServerClient) -> dict[str, int]:
    """Region name -> byte size, as the server reports its CUDA shared memory."""
    regions = client.get_cuda_shared_memory_status(as_json=True).get("regions", {})
    return {name: int(region["byte_size"]) for name, region in regions.items()}


@needs_cuda_shm
@pytest.mark.integration
def test_frames_over_cuda_shm_come_back_as_over_plain_grpc(triton_server):
    # Two sizes: the larger frames grow their slots' regions on the way.
    frames = list(render_frames(3, 320, 180)) + list(render_frames(3, 640, 360))
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        plain = [o.result for o in stream_frames(client, frames, PlainGrpcTransport(), 2)]
        with CudaShmTransport(client, depth=2, byte_size=320 * 180 * 3) as transport:
            assert cuda_regions(client) == {r.name: r.byte_size for r in transport.regions}
            host = list(stream_frames(client, frames, transport, 2))
            on_gpu = [torch.from_numpy(frame).cuda() for frame in frames]  # DLPack, device to device
            device = list(stream_frames(client, on_gpu, transport, 2))
            assert cuda_regions(client) == {r.name: 640 * 360 * 3 for r in transport.regions}
        assert cuda_regions(client) == {}
    assert cuda_shared_memory().allocated_shared_memory_regions() == []
    for served in (host, device):
        assert [o.error for o in served] == [None] * len(frames)
        for outcome, expected in zip(served, plain, strict=True):
            assert len(expected) > 0
            assert_same_detections(outcome.result, expected)
