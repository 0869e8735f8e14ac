"""Mask toggles (backends.rle_kernel) -> polygons, on the host.

A mask's toggles are the ascending column-major flat indices (x * height + y) where it changes
value: run starts and exclusive run ends, alternating (COCO's runs: a run may go on from the
bottom of one column to the top of the next). The polygons are traced from the runs themselves
by the C tracer (backends.contour_trace), at a cost of runs plus boundary pixels, never of the
masks' area; they equal backends.polygons.largest_contour_reference on the full masks. (The COCO
strings are made on the device: backends.rle_strings_kernel.)

A batch with many toggles is traced on a few threads at once, each taking the next mask as it
finishes one: one ctypes call, which lets go of the GIL for all of it. A mask is never split, so
a frame whose time is one large mask's gains little. The helper threads are the process's
TracerCrew, kept between calls; the postprocess wakes as many as the batch's toggles call for
while its runs are being copied, so they are running when the runs arrive. Started then
instead, three helpers began 50-220 us into a lone 1080p frame's tracing on the H200 host;
woken ahead, its 25 masks took 0.40 ms on 8 threads, against 0.91 with 7 helpers started for
the call and 1.11 on one thread (benchmarks/results/h200/postprocess-crew.md).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from typing import Self

import numpy as np

from backends.contour_trace import BAD_TOGGLES, NO_MEMORY, tracer_library
from backends.results import EMPTY_POLYGON

MAX_HEIGHT = 1 << 30  # contour_trace.c's sentinels lie past every row of such frames
# Threads per call, helpers included, at most (and no more than the CPUs): on the H200 host a lone
# 1080p frame with 25 detections took 0.61 ms on 4, 0.55 on 6 and 0.51 on 8, with 100 detections
# 1.62 -> 1.12 ms (postprocess-crew.md). The other stages and instances share the CPU: the
# helpers sleep between calls, spin only while a batch's runs are copied, and do no more work in
# all than one thread would.
MAX_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
# A thread per this many toggles, at most MAX_THREADS: the helpers a batch wakes, and a call
# given no crew with fewer toggles than two threads' worth is traced on the calling thread
# alone. The H200 host's sweep (postprocess-threads.md): 5 k against 10 k after 2 ms idle was
# faster in 5 of 6 workloads (720p/10 0.404 -> 0.355 ms, 1080p/25 0.551 -> 0.524).
TOGGLES_PER_THREAD = 5_000


def _integers(name: str, values: np.ndarray, dtype: type) -> np.ndarray:
    """values as a contiguous 1-D array of dtype, or ValueError naming what is wrong."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {values.dtype}")
    if values.dtype != dtype and values.size and (values.min() < 0 or values.max() > np.iinfo(dtype).max):
        raise ValueError(f"{name} must lie in [0, {np.iinfo(dtype).max}], got {values.min()}..{values.max()}")
    return np.ascontiguousarray(values, dtype=dtype)


class TracerCrew:
    """Helper threads for largest_contours_from_runs (contour_trace.c's crew).

    A helper sleeps until a call's masks come or wake() has it spin for up to 1 ms waiting for
    them. One thread traces with a crew at a time. The postprocess uses the process's crew
    (kept_crew); a crew of its own is a context manager that closes it.
    """

    def __init__(self, helpers: int | None = None):
        self.helpers = MAX_THREADS - 1 if helpers is None else helpers
        if self.helpers < 0:
            raise ValueError(f"helpers must be >= 0, got {self.helpers}")
        self._handle = tracer_library().crew_start(self.helpers) if self.helpers else None
        if self.helpers and not self._handle:
            raise MemoryError("the contour tracer's crew could not be allocated")
        self.closed = False

    def handle(self) -> int | None:
        """The C crew (None without helpers); ValueError once closed."""
        if self.closed:
            raise ValueError("this TracerCrew is closed")
        return self._handle

    def wake(self, helpers: int | None = None) -> None:
        """Has up to `helpers` (all by default) spin for the next 1 ms, waiting for masks."""
        handle, count = self.handle(), self.helpers if helpers is None else helpers
        if handle and count > 0:
            tracer_library().crew_wake(handle, count)

    def close(self) -> None:
        """Stops the helpers (waiting for them to leave); closing again does nothing."""
        if not self.closed and self._handle:
            tracer_library().crew_stop(self._handle)
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_process_crew: TracerCrew | None = None
_process_crew_free = threading.Lock()


@contextlib.contextmanager
def kept_crew() -> Iterator[TracerCrew]:
    """The process's crew (MAX_THREADS - 1 helpers, started at first use and kept); while another
    thread traces with it, a crew started for this block alone."""
    global _process_crew
    if not _process_crew_free.acquire(blocking=False):
        with TracerCrew() as own:
            yield own
        return
    try:
        if _process_crew is None:
            _process_crew = TracerCrew()
        yield _process_crew
    finally:
        _process_crew_free.release()


def helpers_for(toggles: int) -> int:
    """The helpers worth waking for a call of this many toggles: a thread per
    TOGGLES_PER_THREAD, this one included, at most MAX_THREADS."""
    return max(0, min(MAX_THREADS, toggles // TOGGLES_PER_THREAD) - 1)


def largest_contours_from_runs(
    toggles: np.ndarray, ends: np.ndarray, heights: np.ndarray, crew: TracerCrew | None = None
) -> list[np.ndarray]:
    """Every mask's polygon: the same as backends.polygons.largest_contour_reference on the full mask.

    Args:
        toggles: every mask's toggles, concatenated (int32 as the RLE kernel writes them; other
            integer types are converted when they fit).
        ends: (N,) inclusive cumulative toggle counts per mask.
        heights: (N,) the height of each mask's frame.
        crew: helpers (TracerCrew, best woken before the runs are ready) to trace with this
            thread, else the process's crew. Either traces only a call of two or more masks
            whose toggles are worth a helper (helpers_for); a smaller call (or any, with
            MAX_THREADS 1) is traced on this thread alone.

    Returns:
        N (P, 2) int32 xy arrays (EMPTY_POLYGON for an empty mask).

    Raises:
        ValueError: inputs of the wrong shape or type, an odd toggle count, ends that decrease
            or pass the toggles, heights outside [1, 2**30], a mask's toggles that do not
            increase, or a closed crew.
        RuntimeError: no C compiler to build the tracer (backends.contour_trace).
        MemoryError: the tracer's scratch memory could not be allocated.
    """
    toggles = _integers("toggles", toggles, np.int32)
    ends = _integers("ends", ends, np.int64)
    heights = _integers("heights", heights, np.int64)
    if len(heights) != len(ends):
        raise ValueError(f"heights has {len(heights)} masks, ends {len(ends)}")
    counts = np.diff(ends, prepend=0)
    if len(ends) and (counts.min() < 0 or ends[-1] > len(toggles)):
        raise ValueError(f"ends must not decrease nor pass the {len(toggles)} toggles, got {ends.tolist()[:8]}...")
    if np.any(counts % 2):
        raise ValueError(f"mask {int(np.flatnonzero(counts % 2)[0])} has an odd toggle count")
    if len(heights) and (heights.min() < 1 or heights.max() > MAX_HEIGHT):
        raise ValueError(f"heights must lie in [1, {MAX_HEIGHT}], got {heights.min()}..{heights.max()}")
    given = crew.handle() if crew is not None else None  # refuses a closed crew, whatever the call
    if len(ends) < 2 or helpers_for(int(ends[-1])) == 0:
        return _trace_masks(toggles, ends, heights, None)
    if crew is not None:
        return _trace_masks(toggles, ends, heights, given)
    with kept_crew() as kept:
        return _trace_masks(toggles, ends, heights, kept.handle())


def _trace_masks(toggles: np.ndarray, ends: np.ndarray, heights: np.ndarray, crew: int | None) -> list[np.ndarray]:
    """The C tracer on checked inputs, with the crew's helpers (None: this thread alone)."""
    if len(ends) == 0:
        return []
    trace = tracer_library().largest_contours
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    bad_mask = np.zeros(1, dtype=np.int64)
    room = len(toggles) + 4 * len(ends)  # enough for smooth masks; the rare rest call again
    while True:
        points = np.empty((room, 2), dtype=np.int32)
        needed = trace(toggles, ends, heights, len(ends), points, room, offsets, bad_mask, crew)
        if needed == BAD_TOGGLES:
            raise ValueError(f"mask {int(bad_mask[0])}'s toggles must be non-negative and increasing")
        if needed == NO_MEMORY:
            raise MemoryError("the contour tracer ran out of memory")
        if needed <= room:
            break
        room = int(needed)
    bounds = offsets.tolist()  # Python ints: slicing with numpy scalars costs ~4x more per mask
    return [points[a:b] if b > a else EMPTY_POLYGON for a, b in itertools.pairwise(bounds)]
