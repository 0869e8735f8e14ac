"""How a frame travels to Triton: inline in the gRPC request (raw, or as a JPEG file), or through
system or CUDA shared memory.

Only the input changes; outputs always come back over gRPC (their size is known only after
inference). The ensemble's input is [1, H, W, 3] (contract.ENSEMBLE_INPUTS): the frame's bytes
as they are, under a leading batch axis of 1. A transport hands out the request inputs for one
frame in one slot of its ring; the caller (clients.stream) reuses a slot only after that slot's
request has completed, and has the transport register again with a server that restarted.

Which one: grpc works anywhere; jpeg too, sending each frame as a JPEG file of quality
backends.jpeg_files.JPEG_QUALITY to the JPEG ensemble (a repository built with --jpeg), a few hundred kB for a 1080p
frame instead of 6.2 MB: for a server on another host. system_shm needs the server on this host
(or sharing its IPC namespace: a Jetson, a CPU host, containers with `ipc: host`); cuda needs the
server on this host and this GPU, and tritonclient's CUDA support (cuda-bindings), imported only
when chosen.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from backends.contract import ENSEMBLE, IMAGE, JPEG, JPEG_ENSEMBLE
from backends.frames import check_frame
from backends.jpeg_files import encode_jpeg

logger = logging.getLogger(__name__)

# Region names must be unique on the server: the pid separates processes, the counter separates
# transports (and regrown regions) inside one process.
_region_ids = itertools.count()


class TransportUnavailable(ValueError):
    """A transport this host cannot use (a dependency is missing, no GPU); the message says what
    is missing and what to use instead. A ValueError, as an unknown transport is: the option is
    what has to change."""


def image_input(frame: Any) -> grpcclient.InferInput:
    """The ensemble's image input for `frame`, [1, H, W, 3], without data.

    Args:
        frame: a numpy array, or (CudaShmTransport only) a tensor with shape, dtype and
            __dlpack__ (a torch CUDA tensor).

    Raises:
        backends.frames.InvalidImageError (a ValueError): `frame` is no non-empty uint8 HxWx3.
    """
    check_frame(frame.shape, frame.dtype)
    return grpcclient.InferInput(IMAGE, [1, *frame.shape], "UINT8")


class Transport:
    """Common interface: inputs for a frame in a slot, then close(). A context manager."""

    def inputs_for(self, slot: int, frame: np.ndarray) -> list[grpcclient.InferInput]:
        """The request inputs carrying `frame`, using ring slot `slot`."""
        raise NotImplementedError

    def register_again(self) -> None:
        """Tells a server that lost what the transport registered (it restarted) about it again."""

    def close(self) -> None:
        """Releases what the transport holds; safe to call twice."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PlainGrpcTransport(Transport):
    """The frame's bytes travel inside the gRPC request; slots are irrelevant."""

    def inputs_for(self, slot: int, frame: np.ndarray) -> list[grpcclient.InferInput]:
        image = image_input(frame)
        image.set_data_from_numpy(np.ascontiguousarray(frame)[None])
        return [image]


class JpegGrpcTransport(Transport):
    """The frame encoded as a JPEG file (backends.jpeg_files.encode_jpeg) travels inside the gRPC
    request, to the JPEG ensemble, which decodes it on the server; slots are irrelevant."""

    def inputs_for(self, slot: int, frame: np.ndarray) -> list[grpcclient.InferInput]:
        check_frame(frame.shape, frame.dtype)
        data = encode_jpeg(frame)
        file = grpcclient.InferInput(JPEG, [1, data.size], "UINT8")
        file.set_data_from_numpy(data.reshape(1, -1))
        return [file]


@dataclass
class ShmRegion:
    """One registered shared-memory region (system or CUDA)."""

    name: str  # on the server; for system memory also the segment's key, "/" + name
    byte_size: int
    handle: Any  # tritonclient's handle of the local memory


class ShmRingTransport(Transport):
    """A ring of `depth` shared-memory regions registered with the server, one per slot.

    The frame is copied into its slot's region and the request only names the region, so the
    frame's bytes never cross the gRPC channel. A frame bigger than its slot's region gets a
    bigger region (a new one, under a new name) instead of being truncated. Subclasses say how a
    region is allocated, registered, written and freed (system or CUDA memory).

    Args:
        client: the gRPC client of the server that reads the regions (same host).
        depth: number of regions, at least the number of requests in flight.
        byte_size: initial size of each region in bytes.

    Raises:
        ValueError: depth or byte_size below 1.
        InferenceServerException: the server refused a region.
    """

    memory = ""  # "system" or "cuda": which of the server's registries holds the regions

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        depth: int = 2,
        byte_size: int = 1280 * 720 * 3,
    ):
        if depth < 1 or byte_size < 1:
            raise ValueError(
                f"depth and byte_size must be >= 1, got depth={depth}, byte_size={byte_size}"
            )
        self._client = client
        self._regions: list[ShmRegion] = []
        try:
            for _ in range(depth):
                self._regions.append(self._create(byte_size))
        except BaseException:
            self.close()
            raise

    @property
    def regions(self) -> tuple[ShmRegion, ...]:
        """The live regions, slot order."""
        return tuple(self._regions)

    def inputs_for(self, slot: int, frame: Any) -> list[grpcclient.InferInput]:
        image = image_input(frame)
        if not 0 <= slot < len(self._regions):
            raise IndexError(
                f"slot {slot} outside the ring of {len(self._regions)} shared-memory regions: "
                "give the transport a depth >= the stream's depth"
            )
        byte_size = math.prod(frame.shape)  # uint8: one byte an element
        if byte_size > self._regions[slot].byte_size:
            self._regions[slot] = self._regrow(self._regions[slot], byte_size)
        region = self._regions[slot]
        # The [1, H, W, 3] input is the frame's bytes as they are: no batch axis to write.
        self._write(region, frame)
        image.set_shared_memory(region.name, byte_size)
        return [image]

    def register_again(self) -> None:
        # A server that only dropped the connection still holds the regions: that is fine too.
        for region in self._regions:
            try:
                self._register(region)
            except InferenceServerException as error:
                if error.status() != "StatusCode.ALREADY_EXISTS":
                    raise

    def close(self) -> None:
        regions, self._regions = self._regions, []
        for region in regions:
            self._release(region)

    # What each kind of memory does differently.

    def _allocate(self, name: str, byte_size: int) -> Any:
        """The local memory of a new region: tritonclient's handle."""
        raise NotImplementedError

    def _register(self, region: ShmRegion) -> None:
        raise NotImplementedError

    def _write(self, region: ShmRegion, frame: Any) -> None:
        raise NotImplementedError

    def _free(self, handle: Any) -> None:
        raise NotImplementedError

    def _create(self, byte_size: int) -> ShmRegion:
        name = f"rfdetr_frame_{os.getpid()}_{next(_region_ids)}"
        region = ShmRegion(name, byte_size, self._allocate(name, byte_size))
        try:
            self._register(region)
        except BaseException:
            self._free(region.handle)
            raise
        return region

    def _regrow(self, region: ShmRegion, byte_size: int) -> ShmRegion:
        # The new region exists before the old one goes: if creating it fails, the slot still
        # holds a valid region and close() releases it.
        bigger = self._create(byte_size)
        logger.debug(
            "%s shared-memory region %s (%d B) -> %s (%d B)",
            self.memory,
            region.name,
            region.byte_size,
            bigger.name,
            byte_size,
        )
        self._release(region)
        return bigger

    def _release(self, region: ShmRegion) -> None:
        # Best effort on both sides: a dead server must not leak the local memory.
        try:
            unregister_when_released(self._client, region.name, memory=self.memory)
        except Exception as error:  # noqa: BLE001 - logged, the local memory is still freed
            logger.warning(
                "could not unregister %s shared-memory region %s: %s",
                self.memory,
                region.name,
                error,
            )
        self._free(region.handle)


class SystemShmTransport(ShmRingTransport):
    """A ring of POSIX shared-memory segments (/dev/shm/rfdetr_frame_*): the server on this host
    (a Jetson, a CPU host) maps them. Arguments as ShmRingTransport's."""

    memory = "system"

    def _allocate(self, name: str, byte_size: int) -> Any:
        return shm.create_shared_memory_region(name, "/" + name, byte_size)

    def _register(self, region: ShmRegion) -> None:
        self._client.register_system_shared_memory(
            region.name, "/" + region.name, region.byte_size
        )

    def _write(self, region: ShmRegion, frame: np.ndarray) -> None:
        shm.set_shared_memory_region(region.handle, [np.ascontiguousarray(frame)])

    def _free(self, handle: Any) -> None:
        shm.destroy_shared_memory_region(handle)


def cuda_shared_memory() -> ModuleType:
    """tritonclient.utils.cuda_shared_memory, imported now (it needs cuda-bindings, which hosts
    without a GPU lack); not cached, so that a test can make it fail.

    Raises:
        TransportUnavailable: it cannot be imported; the message says what to install.
    """
    try:
        # import_module returns what sys.modules holds; `import a.b.c as m` would return the
        # parent package's attribute instead, which a test's stand-in cannot replace.
        cudashm = importlib.import_module("tritonclient.utils.cuda_shared_memory")
    # tritonclient raises RuntimeError when cuda-bindings is missing (ImportError otherwise).
    except (ImportError, RuntimeError) as error:
        raise TransportUnavailable(
            "transport cuda needs tritonclient's CUDA shared-memory support, which could not be "
            f"imported ({error}): install cuda-bindings (cuda-python), e.g. "
            "pip install 'tritonclient[cuda]'. CUDA shared memory also needs the server on this "
            "host and this GPU; otherwise use system_shm (same host, e.g. a Jetson) or grpc"
        ) from error
    return cudashm


# tritonclient copies every frame on one CUDA stream per device, which it creates on first use
# without a lock and synchronizes after each copy (cuda_shared_memory/__init__.py,
# _get_or_create_global_cuda_stream, tritonclient 2.73): streams on several threads would race
# to create it, and wait for each other's copies anyway. One lock makes that explicit.
_cuda_write_lock = threading.Lock()


class CudaShmTransport(ShmRingTransport):
    """A ring of CUDA device buffers shared with the server through CUDA IPC handles: the frame
    is copied to the GPU once, by the client, and the server reads it where it is.

    Frames may be host numpy arrays (copied host to device) or device tensors exposing DLPack,
    e.g. a torch CUDA tensor or NVDEC output, C-contiguous (copied device to device). Needs the
    server on this host and this GPU (Triton opens the IPC handle, for Jetson use
    SystemShmTransport). Built on tritonclient.utils.cuda_shared_memory
    (create_shared_memory_region, get_raw_handle, set_shared_memory_region[_from_dlpack],
    destroy_shared_memory_region) as tritonclient's simple_grpc_cudashm_client example uses it.

    Args:
        client, depth, byte_size: as ShmRingTransport's.
        device_id: the GPU holding the regions, numbered as the server numbers it (the same
            CUDA_VISIBLE_DEVICES on both sides).

    Raises:
        ValueError: depth or byte_size below 1, device_id below 0.
        TransportUnavailable: tritonclient's CUDA support is missing, or the GPU memory could
            not be allocated (no such GPU, no driver).
        InferenceServerException: the server refused a region (on another host or GPU, or
            built without GPU support).
    """

    memory = "cuda"

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        depth: int = 2,
        byte_size: int = 1280 * 720 * 3,
        device_id: int = 0,
    ):
        if device_id < 0:
            raise ValueError(f"device_id must be a GPU index >= 0, got {device_id}")
        self._device_id = device_id
        super().__init__(client, depth, byte_size)

    def _allocate(self, name: str, byte_size: int) -> Any:
        cudashm = cuda_shared_memory()
        try:
            return cudashm.create_shared_memory_region(name, byte_size, self._device_id)
        except cudashm.CudaSharedMemoryException as error:
            raise TransportUnavailable(
                f"cannot allocate {byte_size} B of CUDA shared memory on GPU {self._device_id}: "
                f"{error} ({error.__cause__ or 'no further detail'})"
            ) from error

    def _register(self, region: ShmRegion) -> None:
        raw_handle = cuda_shared_memory().get_raw_handle(region.handle)
        self._client.register_cuda_shared_memory(
            region.name, raw_handle, self._device_id, region.byte_size
        )

    def _write(self, region: ShmRegion, frame: Any) -> None:
        cudashm = cuda_shared_memory()
        with _cuda_write_lock:
            if isinstance(frame, np.ndarray):
                cudashm.set_shared_memory_region(region.handle, [np.ascontiguousarray(frame)])
            else:
                cudashm.set_shared_memory_region_from_dlpack(region.handle, [frame])

    def _free(self, handle: Any) -> None:
        # tritonclient forgets the region; cudaFree runs once the last reference (the ring's
        # ShmRegion) is gone.
        cuda_shared_memory().destroy_shared_memory_region(handle)


def unregister_when_released(
    client: grpcclient.InferenceServerClient,
    name: str,
    timeout_s: float = 2.0,
    memory: str = "system",
) -> None:
    """Unregisters a shared-memory region, waiting while the server still holds it.

    The server lets go of a request's input region a moment after the response has reached the
    client; until then it refuses with "currently in use".

    Args:
        memory: "system" or "cuda": which of the server's registries holds the region.
    """
    unregister = getattr(client, f"unregister_{memory}_shared_memory")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            unregister(name)
            return
        except InferenceServerException as error:
            if "in use" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


_FACTORIES = {
    "grpc": lambda client, depth: PlainGrpcTransport(),
    "jpeg": lambda client, depth: JpegGrpcTransport(),
    "system_shm": SystemShmTransport,
    "cuda": CudaShmTransport,
}
TRANSPORT_KINDS = tuple(_FACTORIES)


def ensemble_for(kind: str) -> str:
    """The ensemble a transport's requests go to: the JPEG one for jpeg, else the raw frames' one."""
    return JPEG_ENSEMBLE if kind == "jpeg" else ENSEMBLE


def check_transport(kind: str) -> None:
    """Refuses a transport that is unknown, or that this host cannot use, before anything runs.

    Raises:
        ValueError: an unknown kind.
        TransportUnavailable (a ValueError): a dependency of the kind is missing.
    """
    if kind not in _FACTORIES:
        raise ValueError(f"unknown transport {kind!r}; choose one of {list(TRANSPORT_KINDS)}")
    if kind == "cuda":
        cuda_shared_memory()


def make_transport(kind: str, client: grpcclient.InferenceServerClient, depth: int) -> Transport:
    """The transport named `kind` (one of TRANSPORT_KINDS) for `depth` requests in flight.

    Raises:
        ValueError, TransportUnavailable: as check_transport, or as the transport's constructor.
        InferenceServerException: the server refused the transport's shared memory.
    """
    check_transport(kind)
    return _FACTORIES[kind](client, depth)
