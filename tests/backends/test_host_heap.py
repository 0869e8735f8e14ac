"""backends.host_heap: the thresholds it asks the C library for, what it does when refused, and
in a real process that freed frame copies are reused without page faults."""

import subprocess
import sys
import textwrap

from backends import host_heap
from backends.host_heap import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD_BYTES,
    TRIM_THRESHOLD_BYTES,
    keep_freed_host_memory,
)


class FakeMallopt:
    """Stands in for libc's mallopt in these unit tests: records calls, answers `reply`."""

    def __init__(self, reply: int = 1):
        self.reply, self.calls = reply, []

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.reply


def test_both_thresholds_are_fixed_and_the_log_says_so(log_lines):
    mallopt = FakeMallopt()
    assert keep_freed_host_memory("stage", mallopt)
    assert mallopt.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)]
    assert log_lines == ["stage: freed host buffers up to 32 MiB stay in the heap for reuse"]


def test_a_refusal_keeps_the_defaults_and_is_logged(log_lines):
    assert not keep_freed_host_memory("stage", FakeMallopt(reply=0))
    assert len(log_lines) == 1 and "refused" in log_lines[0] and log_lines[0].startswith("stage:")


def test_a_c_library_without_mallopt_keeps_its_defaults(log_lines, monkeypatch):
    monkeypatch.setattr(host_heap, "libc_mallopt", lambda: None)
    assert not keep_freed_host_memory("stage")
    assert "missing" in log_lines[0]


FAULTS_PER_FRAME = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from backends.host_heap import keep_freed_host_memory
    if sys.argv[1] == "kept":
        assert keep_freed_host_memory("test")
    frame = np.zeros((1080, 1920, 3), np.uint8)
    faults = []
    for _ in range(20):  # batches of 4 frames copied (as the stub copies its inputs) and freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        copies = [frame.copy() for _ in range(4)]
        del copies
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
    print(sorted(faults[5:])[len(faults[5:]) // 2])
    """
)


def faults_per_frame(mode: str) -> float:
    run = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_FRAME, mode], capture_output=True, text=True, check=True
    )
    return float(run.stdout)


def test_freed_frame_copies_are_reused_without_page_faults():
    # A 1080p frame spans ~1500 pages of 4 KiB. The control shows this host's glibc gives a
    # batch's frames back to the kernel between batches; otherwise the test would prove nothing.
    assert faults_per_frame("default") > 100
    assert faults_per_frame("kept") < 10
