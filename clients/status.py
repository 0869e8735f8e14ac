"""A live view of many streams: one plain text line per stream, refreshed at most once a second.

Plain lines (no cursor movement, no curses) read the same in a terminal, in a pipe and in a log
file; each refresh prints one line per stream to stderr, so stdout stays for the summary.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TextIO

import numpy as np

from clients.stream import FrameOutcome

LATENCY_WINDOW = 500  # served frames behind the latency percentiles: recent, not the whole run


class StreamStatus:
    """One stream's counters, updated from its thread, read from the display's."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self.frames = self.failed = self.dropped = 0
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._since = time.monotonic()
        self._frames_since = 0  # frames since the last line: its frames/s
        self.state = "starting"

    def count(self, outcome: FrameOutcome) -> None:
        with self._lock:
            self.frames += 1
            self._frames_since += 1
            if outcome.dropped:
                self.dropped += 1
            elif not outcome.ok:
                self.failed += 1
            else:
                self._latencies_ms.append(outcome.latency_s * 1000)

    def line(self) -> str:
        """Frames/s since the previous line, latency p50/p99 of recent frames, the counts."""
        with self._lock:
            now = time.monotonic()
            fps = self._frames_since / max(now - self._since, 1e-9)
            self._since, self._frames_since = now, 0
            latencies = np.asarray(self._latencies_ms)
            frames, failed, dropped = self.frames, self.failed, self.dropped
        if latencies.size:
            p50, p99 = np.percentile(latencies, [50, 99])
            latency = f"latency p50 {p50:.0f} ms p99 {p99:.0f} ms"
        else:
            latency = "latency p50 - p99 -"
        return (
            f"{self.name}: {self.state}  {fps:.1f} frames/s  {latency}  "
            f"frames {frames}  dropped {dropped}  failed {failed}"
        )


class StatusDisplay:
    """Prints every stream's line every `interval_s` seconds on a thread, and once more at the
    end. A context manager.

    Args:
        statuses: the streams, in the order their lines are printed.
        interval_s: seconds between refreshes; at least 1 (a faster one floods logs).
        out: where the lines go.
    """

    def __init__(
        self, statuses: list[StreamStatus], interval_s: float = 1.0, out: TextIO | None = None
    ):
        if not interval_s >= 1.0:
            raise ValueError(f"interval_s must be >= 1 second, got {interval_s}")
        self.statuses = statuses
        self.interval_s = interval_s
        self.out = out or sys.stderr
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="status", daemon=True)

    def print_lines(self) -> None:
        self.out.write("".join(status.line() + "\n" for status in self.statuses))
        self.out.flush()

    def _refresh(self) -> None:
        while not self._done.wait(self.interval_s):
            self.print_lines()

    def __enter__(self) -> StatusDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.print_lines()
