"""Where a served python stage spends its time: a sampling profiler of the stub's main thread.

Triton's statistics say how long a stage's execute takes, not where. With RFDETR_STAGE_PROFILE
set to a path prefix in the server's environment, every python stage samples its main thread's
Python stack every 2 ms and rewrites `<prefix>-<model>-<pid>.txt` every 2 s: the most frequent
stacks (innermost frame first) with their share of the samples. Time the thread spends outside
Python, in the stub's C++ (messages to the server, copies of GPU outputs) or waiting for the next
batch, counts as "(no Python frame)". One look at it under load on the H200 found 57 % of the
postprocess stage's busy time copying outputs on the host
(benchmarks/results/h200/perf-analyzer/concurrency-32.md).

Sampling costs the stage a few microseconds of the GIL every 2 ms; without the variable nothing
starts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

PROFILE_ENV = "RFDETR_STAGE_PROFILE"
NO_PYTHON_FRAME = "(no Python frame)"


class StackSampler:
    """Counts one thread's Python stacks, sampled from another thread.

    Args:
        thread_id: the sampled thread's `threading.get_ident()`.
        path: the report, rewritten every `write_every_s`.
        title: the report's first line.
        interval_s, write_every_s: sampling and reporting periods.
        depth: frames kept per stack, innermost first.
        top: stacks listed in the report.
    """

    def __init__(
        self,
        thread_id: int,
        path: Path,
        title: str,
        interval_s: float = 0.002,
        write_every_s: float = 2.0,
        depth: int = 8,
        top: int = 30,
    ) -> None:
        if interval_s <= 0 or write_every_s <= 0 or depth < 1 or top < 1:
            raise ValueError("interval_s and write_every_s must be > 0, depth and top >= 1")
        self.thread_id, self.path, self.title = thread_id, Path(path), title
        self.interval_s, self.write_every_s, self.depth, self.top = interval_s, write_every_s, depth, top
        self.counts: Counter[str] = Counter()
        self._started = time.monotonic()
        self._stop = threading.Event()

    def sample(self) -> None:
        """Counts the sampled thread's current stack once."""
        frame = sys._current_frames().get(self.thread_id)
        names = []
        while frame is not None and len(names) < self.depth:
            code = frame.f_code
            names.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}")
            frame = frame.f_back
        self.counts[" < ".join(names) or NO_PYTHON_FRAME] += 1

    def write(self) -> None:
        """Rewrites the report (through a temporary file, so a reader never sees half of one)."""
        total = sum(self.counts.values())
        elapsed = time.monotonic() - self._started
        lines = [f"# {self.title}: {total} samples every {self.interval_s * 1e3:g} ms over {elapsed:.1f} s"]
        lines += [f"{n / total:6.1%} {n:7d}  {stack}" for stack, n in self.counts.most_common(self.top)]
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("\n".join(lines) + "\n")
        partial.replace(self.path)

    def _run(self) -> None:
        written = time.monotonic()
        while not self._stop.wait(self.interval_s):
            self.sample()
            if time.monotonic() - written >= self.write_every_s:
                self.write()
                written = time.monotonic()

    def start(self) -> StackSampler:
        """Samples and reports on a daemon thread, which ends with the process or stop()."""
        threading.Thread(target=self._run, name="stage-profile", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops sampling (a served stage never does: its report is rewritten until it exits)."""
        self._stop.set()


def profile_stage_if_asked(model_name: str) -> StackSampler | None:
    """Starts sampling the calling thread (a stage's main thread: initialize and execute run on
    it) when RFDETR_STAGE_PROFILE is set; returns the running sampler, or None.

    Raises:
        ValueError: the report cannot be written there (naming the variable and the path).
    """
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        return None
    path = Path(f"{prefix}-{model_name}-{os.getpid()}.txt")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as error:
        raise ValueError(f"{PROFILE_ENV}={prefix}: cannot write the profile {path}: {error}") from error
    return StackSampler(threading.get_ident(), path, f"{model_name} pid {os.getpid()}").start()
