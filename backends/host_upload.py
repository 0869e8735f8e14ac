"""Host inputs to the GPU, from shared memory the CUDA driver can read directly.

The python backend hands a stage its CPU inputs (frames sent over system shared memory or plain
gRPC, the engine's rows sent the same ways) inside the stub's shared-memory region. That memory
is pageable, so `tensor.to("cuda")` makes the driver copy it through a staging buffer of its own
on the calling thread: 0.45 ms of host time per 1080p frame on the H200 host, in a stage whose
host is the ensemble's limit over system shared memory. Registered once with cudaHostRegister,
the same mapping is page-locked: an upload costs the host ~10 us and runs at the link's speed
(0.12 ms a frame alone; benchmarks/results/h200/host-upload.md).

Registering is safe for the stub's life: python_backend's SharedMemoryManager never unmaps a
region it grew (it keeps the old mappings), so a registered address range keeps its pages.
Memory that is not a /dev/shm mapping (a test's tensors, a CPU stage's own buffers) is uploaded
as before, after a look at /proc/self/maps each time: not cached, because the address range of
a freed buffer may later hold a grown region. Served stages get every input in shared memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from backends.server_log import log_info

SHARED_MEMORY_DIR = "/dev/shm/"


def shared_mapping(address: int, maps: Path = Path("/proc/self/maps")) -> tuple[int, int] | None:
    """[start, end) of the /dev/shm file mapping of this process that holds `address`, or None."""
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if start <= address < end:
            path = fields[5] if len(fields) == 6 else ""
            return (start, end) if path.startswith(SHARED_MEMORY_DIR) else None
    return None


def cuda_host_register(start: int, size: int) -> str | None:
    """cudaHostRegister(start, size): None when it worked, else the CUDA error's name."""
    cudart = torch.cuda.cudart()
    error = cudart.cudaHostRegister(start, size, 0)
    return None if error == cudart.cudaError.success else str(error)


class PinnedMappings:
    """The shared-memory mappings of this process registered with CUDA, each once.

    Args:
        register: registers [start, start + size); returns None or the reason it failed
            (cuda_host_register; a unit test passes a fake).
    """

    def __init__(self, register: Callable[[int, int], str | None] = cuda_host_register) -> None:
        self._register = register
        self.pinned: list[tuple[int, int]] = []
        self._refused: list[tuple[int, int]] = []

    def pin(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor`'s memory is now page-locked: registers its mapping the first time one
        of its tensors comes by. A mapping the driver refused (a container's locked-memory limit)
        is logged once and left pageable."""
        address = tensor.data_ptr()
        if any(start <= address < end for start, end in self.pinned):
            return True
        if any(start <= address < end for start, end in self._refused):
            return False
        mapping = shared_mapping(address)
        if mapping is None:
            return False
        start, end = mapping
        reason = self._register(start, end - start)
        if reason is not None:
            log_info(f"shared memory at {start:#x} ({(end - start) >> 20} MiB) left pageable: cudaHostRegister {reason}")
            self._refused.append(mapping)
            return False
        log_info(f"shared memory at {start:#x} ({(end - start) >> 20} MiB) registered for direct uploads")
        self.pinned.append(mapping)
        return True


_PINNED = PinnedMappings()


def upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`, asynchronously where its memory allows: a host tensor bound for a GPU
    has its shared-memory mapping registered first. The caller keeps `tensor` alive until the
    device's stream has run the copy (serve_batch waits for it before answering)."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        _PINNED.pin(tensor)
    return tensor.to(device, non_blocking=True)
