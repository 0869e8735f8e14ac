"""A stage process's heap kept for reuse: the large host buffers one execute frees serve the next
without faulting their pages in again.

Before each execute the python backend's stub copies every CPU input into a new numpy array,
which is freed with the request. The copy happens because pybind11 copies an array made from a
bare pointer (python_backend src/pb_tensor.cc: `py::array(dtype, dims, ptr)`, no base). That is
6.2 MB for a 1080p frame (preprocess, over system shm or plain gRPC) and 2.4 MB for a Nano
frame's masks (postprocess on the cpu and jetson targets). glibc's malloc adjusts its thresholds
as it runs (mallopt(3)). A freed block raises the mmap threshold to that block's size, and the
trim threshold to twice that. Then, whenever a batch frees more than the trim threshold at the
top of the heap, that memory goes back to the kernel. So every batch of several frames faulted
its pages in again. Copying 1080p frames into new arrays in batches of 4 took 0.56 ms a frame on
the CPU host, against 0.12 ms with the thresholds fixed (benchmarks/results/cpu/host-heap.md).
Served on an H200 at concurrency 32 over system shm, the ensemble went from 799 to 1337
requests/s (benchmarks/results/h200/perf-analyzer/host-heap.md).

Fixed thresholds also turn glibc's adjustment off. With them, blocks up to 32 MiB come from the
heap: that covers a 4K frame, and 32 MiB is the largest mmap threshold glibc takes on 64-bit.
Freed memory is kept up to 1 GiB. The heap then stays at its high-water mark, about the largest
batch's inputs: 200 MB for 32 1080p frames.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from backends.server_log import log_info

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30

Mallopt = Callable[[int, int], int]  # mallopt(param, value) -> 1 on success, 0 on refusal


def libc_mallopt() -> Mallopt | None:
    """This process's mallopt, or None where the C library has none (musl)."""
    return getattr(ctypes.CDLL(None), "mallopt", None)


def keep_freed_host_memory(model_name: str, mallopt: Mallopt | None = None) -> bool:
    """Fixes this process's malloc thresholds (the module docstring says why); True when the C
    library took both. A library without mallopt, or one that refuses, keeps its defaults, and
    the server log says so: that costs speed, not correctness."""
    mallopt = mallopt or libc_mallopt()
    taken = mallopt is not None and all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        )
    )
    if taken:
        log_info(
            f"{model_name}: freed host buffers up to {MMAP_THRESHOLD_BYTES >> 20} MiB stay in the heap for reuse"
        )
    else:
        log_info(
            f"{model_name}: the C library's mallopt is missing or refused fixed thresholds; its defaults stay"
        )
    return taken
