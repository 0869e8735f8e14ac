"""Newest-wins: what a stream over a live source does when the server falls behind.

A live camera keeps producing frames whether or not they are read; left unread they queue up
(in OpenCV's buffer, or here) and every result comes later and later. Instead, a reader thread
takes the camera's frames as they come and keeps only the newest one waiting; the stream takes
it when one of its slots frees up. A frame replaced while waiting is dropped, and the stream
still answers it: in its place in the order, as Unsent(dropped=True).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np

from clients.stream import Unsent

DROPPED = Unsent("dropped: a newer frame came while every slot was busy", dropped=True)


class NewestWins:
    """One waiting frame between a producer (put, finish) and the stream (iterating).

    Iterating yields, in source order, an Unsent(dropped=True) for every frame dropped so far,
    then the waiting frame; it waits while there is neither, and ends once the producer has
    finished and everything was taken (raising the producer's error, if it had one). Every
    frame put comes out exactly once, as itself or as dropped.

    Args:
        stop: once set, iterating ends at once (a stop request must not wait for a camera that
            is slow to deliver), and so does feed().
    """

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop or threading.Event()
        self._changed = threading.Condition()
        self._waiting: np.ndarray | Unsent | None = None
        self._drops_pending = 0  # dropped, not yet taken: all older than the waiting frame
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False

    def stopped(self) -> bool:
        return self._closed or self._stop.is_set()

    def close(self) -> None:
        """The stream takes nothing more: feed() stops at its next frame."""
        self._closed = True

    def put(self, frame: np.ndarray | Unsent) -> None:
        """Makes `frame` the waiting one; the one it replaces, if any, is dropped."""
        with self._changed:
            if self._waiting is not None:
                self._drops_pending += 1
            self._waiting = frame
            self._changed.notify()

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames; `error`: why the source ended early (raised to the stream)."""
        with self._changed:
            self._finished, self._error = True, error
            self._changed.notify()

    def feed(self, frames: Iterable[np.ndarray | Unsent]) -> None:
        """Puts every frame of `frames` until they end, `stop` is set or close() is called, then
        finishes; run
        it on its own thread, so that the source is read at its own pace."""
        try:
            for frame in frames:
                if self.stopped():
                    break
                self.put(frame)
        except Exception as error:  # noqa: BLE001 - the stream raises it, on its own thread
            self.finish(error)
        else:
            self.finish()

    def __iter__(self) -> Iterator[np.ndarray | Unsent]:
        def ready() -> bool:
            return bool(self._drops_pending) or self._waiting is not None or self._finished

        while True:
            with self._changed:
                # Short waits: a stop request has no way to notify this condition.
                while not ready() and not self.stopped():
                    self._changed.wait(0.1)
                if self.stopped():
                    return
                if self._drops_pending:
                    self._drops_pending -= 1
                    item = DROPPED
                elif self._waiting is not None:
                    item, self._waiting = self._waiting, None
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield item


def newest_wins(
    frames: Iterable[np.ndarray | Unsent], stop: threading.Event, join_timeout_s: float
) -> Iterator[np.ndarray | Unsent]:
    """`frames` (a live source), read on a thread of their own from the first frame taken on,
    newest-wins: what a stream over a live source iterates. Closing it stops the reading.

    Args:
        frames: the live source's frames.
        stop: a stop request: ends the reading and the iterating.
        join_timeout_s: how long closing waits for a read under way (the source's read timeout);
            the source must not be released while a read is under way.
    """
    policy = NewestWins(stop)
    reader = threading.Thread(target=policy.feed, args=(frames,), name="reader", daemon=True)
    reader.start()
    try:
        yield from policy
    finally:
        policy.close()
        reader.join(join_timeout_s)
