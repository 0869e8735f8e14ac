"""How a frame travels to Triton: inline in the gRPC request, or through system shared memory.

Only the input changes; outputs always come back over gRPC (their size is known only after
inference). The ensemble's input is [1, H, W, 3] (contract.ENSEMBLE_INPUTS): the frame's bytes
as they are, under a leading batch axis of 1. A transport hands out the request inputs for one
frame in one slot of its ring; the caller (clients.stream) reuses a slot only after that slot's
request has completed, and has the transport register again with a server that restarted.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from backends.contract import IMAGE
from backends.frames import check_frame

logger = logging.getLogger(__name__)

# Region names must be unique on the host: the pid separates processes, the counter separates
# transports (and regrown regions) inside one process.
_region_ids = itertools.count()


def image_input(frame: np.ndarray) -> grpcclient.InferInput:
    """The ensemble's image input for `frame`, [1, H, W, 3], without data.

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


@dataclass
class ShmRegion:
    """One registered system shared-memory region."""

    name: str
    key: str
    byte_size: int
    handle: Any


class SystemShmTransport(Transport):
    """A ring of `depth` system shared-memory regions registered with the server.

    The frame is copied into its slot's region and the request only names the region, so the
    frame's bytes never cross the gRPC channel. A frame bigger than its slot's region gets a
    bigger region (a new one, under a new name) instead of being truncated.

    Args:
        client: the gRPC client of the server that reads the regions (same host).
        depth: number of regions, at least the number of requests in flight.
        byte_size: initial size of each region in bytes.
    """

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

    def inputs_for(self, slot: int, frame: np.ndarray) -> list[grpcclient.InferInput]:
        image = image_input(frame)
        if not 0 <= slot < len(self._regions):
            raise IndexError(
                f"slot {slot} outside the ring of {len(self._regions)} shared-memory regions: "
                "give the transport a depth >= the stream's depth"
            )
        if frame.nbytes > self._regions[slot].byte_size:
            self._regions[slot] = self._regrow(self._regions[slot], frame.nbytes)
        region = self._regions[slot]
        # The [1, H, W, 3] input is the frame's bytes as they are: no batch axis to write.
        shm.set_shared_memory_region(region.handle, [np.ascontiguousarray(frame)])
        image.set_shared_memory(region.name, frame.nbytes)
        return [image]

    def register_again(self) -> None:
        # A server that only dropped the connection still holds the regions: that is fine too.
        for region in self._regions:
            try:
                self._client.register_system_shared_memory(
                    region.name, region.key, region.byte_size
                )
            except InferenceServerException as error:
                if error.status() != "StatusCode.ALREADY_EXISTS":
                    raise

    def close(self) -> None:
        regions, self._regions = self._regions, []
        for region in regions:
            self._release(region)

    def _create(self, byte_size: int) -> ShmRegion:
        name = f"rfdetr_frame_{os.getpid()}_{next(_region_ids)}"
        region = ShmRegion(
            name,
            "/" + name,
            byte_size,
            shm.create_shared_memory_region(name, "/" + name, byte_size),
        )
        try:
            self._client.register_system_shared_memory(region.name, region.key, byte_size)
        except BaseException:
            shm.destroy_shared_memory_region(region.handle)
            raise
        return region

    def _regrow(self, region: ShmRegion, byte_size: int) -> ShmRegion:
        # The new region exists before the old one goes: if creating it fails, the slot still
        # holds a valid region and close() releases it.
        bigger = self._create(byte_size)
        logger.debug(
            "shared-memory region %s (%d B) -> %s (%d B)",
            region.name,
            region.byte_size,
            bigger.name,
            byte_size,
        )
        self._release(region)
        return bigger

    def _release(self, region: ShmRegion) -> None:
        # Best effort on both sides: a dead server must not leak the local segment.
        try:
            unregister_when_released(self._client, region.name)
        except Exception as error:  # noqa: BLE001 - logged, the local segment is still destroyed
            logger.warning("could not unregister shared-memory region %s: %s", region.name, error)
        shm.destroy_shared_memory_region(region.handle)


def unregister_when_released(
    client: grpcclient.InferenceServerClient, name: str, timeout_s: float = 2.0
) -> None:
    """Unregisters a system shared-memory region, waiting while the server still holds it.

    The server lets go of a request's input region a moment after the response has reached the
    client; until then it refuses with "currently in use"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.unregister_system_shared_memory(name)
            return
        except InferenceServerException as error:
            if "in use" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


_FACTORIES = {
    "grpc": lambda client, depth: PlainGrpcTransport(),
    "system_shm": SystemShmTransport,
}
TRANSPORT_KINDS = tuple(_FACTORIES)


def make_transport(kind: str, client: grpcclient.InferenceServerClient, depth: int) -> Transport:
    """The transport named `kind` (one of TRANSPORT_KINDS) for `depth` requests in flight."""
    if kind not in _FACTORIES:
        raise ValueError(f"unknown transport {kind!r}; choose one of {list(TRANSPORT_KINDS)}")
    return _FACTORIES[kind](client, depth)
