"""SIGINT (Ctrl-C) and SIGTERM as a request to stop, instead of death on the spot: the run stops
sending, lets the frames in flight come back, releases its shared memory and writes its summary,
then exits 128 + the signal's number (130, 143), as a shell reports a process the signal ended."""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """A context manager: inside it, SIGINT and SIGTERM set `event` and are remembered in
    `received`; the previous handlers come back on exit. Python lets only the main thread set
    handlers: elsewhere it changes nothing (the signals keep their usual effect)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signal.Signals(signum)
        self.event.set()

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + self.received

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
