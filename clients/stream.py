"""Streams frames through the ensemble with a bounded number of requests in flight.

Frames are submitted with client.async_infer; completions arrive on gRPC threads and are handed
to the caller's thread through a queue, then yielded in frame order. The window of frames not
yet yielded is at most `depth` wide, which bounds both the requests in flight and the results
held back waiting for an earlier frame.

A source may also hand over an Unsent item instead of a frame (an image that could not be read,
a live frame dropped because the server fell behind): it takes its place in the order and is
answered at once, with no request.

Two things end the sending early without losing a frame that was sent: a stop request, and a
server that went away and did not come back in time. Either way the frames in flight still come
back (failed or not) and are yielded before the stream ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract
from backends.results import SegmentationResult
from clients.reconnect import ServerUnavailable, server_lost
from clients.results import result_from_response
from clients.transports import Transport


@dataclass(frozen=True)
class Unsent:
    """A source's stand-in for a frame that is answered without a request."""

    error: str  # why: the frame could not be read, or was dropped
    dropped: bool = False  # a live frame given up for a newer one (clients.drop_policy)


@dataclass
class FrameOutcome:
    """One frame's fate: its result, or the error text that says why it has none."""

    index: int
    frame: np.ndarray | None = field(repr=False)  # None: the source had no frame (Unsent)
    latency_s: float
    result: SegmentationResult | None = None
    error: str | None = None
    dropped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def stream_frames(
    client: grpcclient.InferenceServerClient,
    frames: Iterable[np.ndarray | Unsent],
    transport: Transport,
    depth: int = 2,
    model_name: str = contract.ENSEMBLE,
    timeout_s: float = 60.0,
    reconnect: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
    parameters: Mapping[str, bool | int | str] | None = None,
) -> Iterator[FrameOutcome]:
    """Sends every frame and yields one FrameOutcome per frame, in frame order.

    Args:
        client: gRPC client of the server.
        frames: BGR uint8 HxWx3 frames, or Unsent items in their place; read lazily, at most
            `depth` ahead of the caller.
        transport: carries each frame (ring slots 0..depth-1).
        depth: requests in flight at most.
        model_name: the model to infer.
        timeout_s: per-request deadline; a request past it comes back as a failed frame.
        reconnect: called once a frame failed because the server went away (clients.reconnect:
            returns True when it is back, False when asked to stop); the transport is then
            registered again and the stream goes on. Frames sent before it came back are
            not what started the outage and call nothing. None: failed frames just fail.
        stop: once set, no further frame is read or sent; the stream ends after the frames in
            flight (each bounded by timeout_s).
        parameters: request parameters sent with every frame (clients.runner.request_parameters).

    Raises:
        ValueError: depth < 1.
        TimeoutError: no completion arrived well past the deadline (the client is stuck).
        ServerUnavailable, InferenceServerException: the server did not come back (or took
            the transport's regions back badly); raised after the frames in flight were yielded.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    completions: queue.SimpleQueue = queue.SimpleQueue()  # (index, end time, response, error text)
    started: dict[int, tuple[float, np.ndarray]] = {}  # in flight: index -> (send time, frame)
    done: dict[int, FrameOutcome] = {}  # completed, waiting for an earlier frame
    next_index = 0  # the next frame to yield
    source = iter(frames)
    submitted = 0
    exhausted = False

    def submit(index: int, frame: np.ndarray) -> None:
        def on_complete(result: grpcclient.InferResult | None, error: Exception | None) -> None:
            completions.put(
                (index, time.perf_counter(), result, None if error is None else str(error))
            )

        sent = time.perf_counter()
        try:
            # Frames in the window [next_index, next_index + depth) have distinct slots, and a slot
            # comes round again only once its previous frame was yielded, i.e. completed.
            inputs = transport.inputs_for(index % depth, frame)
            client.async_infer(
                model_name, inputs, on_complete, client_timeout=timeout_s, parameters=parameters
            )
        except Exception as error:  # noqa: BLE001 - a frame that cannot be sent fails alone
            done[index] = FrameOutcome(index, frame, 0.0, error=f"{type(error).__name__}: {error}")
            return
        started[index] = (sent, frame)

    def collect() -> None:
        # gRPC enforces the deadline; this longer wait only catches a client that never calls back.
        # The grace covers gRPC's own callback delay, which a millisecond deadline would not.
        backstop_s = 2 * timeout_s + 1.0
        try:
            index, finished, response, error = completions.get(timeout=backstop_s)
        except queue.Empty:
            stuck = sorted(started)
            started.clear()  # given up on: nothing left to wait for when the generator closes
            raise TimeoutError(f"frames {stuck} got no response within {backstop_s:g} s") from None
        sent, frame = started.pop(index)
        outcome = FrameOutcome(index, frame, finished - sent, error=error)
        if error is None:
            try:
                outcome.result = result_from_response(response)
            except ValueError as decode_error:
                outcome.error = f"bad response: {decode_error}"
        done[index] = outcome

    gave_up: Exception | None = None  # why the server was given up on
    resumed_at = 0  # frames from here on were sent after the last reconnection

    def recover(outcome: FrameOutcome) -> None:
        nonlocal gave_up, resumed_at
        if outcome.ok or reconnect is None or outcome.index < resumed_at:
            return
        if not server_lost(outcome.error):
            return  # the frame's own failure: the server is fine
        try:
            if reconnect():
                transport.register_again()
        except (ServerUnavailable, InferenceServerException) as error:
            gave_up = error
        # Frames already sent went to the server that left: their failures are this outage's.
        resumed_at = submitted

    def sending() -> bool:
        return gave_up is None and not (stop is not None and stop.is_set())

    try:
        while True:
            while not exhausted and sending() and submitted < next_index + depth:
                frame = next(source, None)
                if frame is None:
                    exhausted = True
                    continue
                if isinstance(frame, Unsent):
                    # It holds its place in the window (and so keeps slots index % depth apart).
                    done[submitted] = FrameOutcome(
                        submitted, None, 0.0, error=frame.error, dropped=frame.dropped
                    )
                else:
                    submit(submitted, frame)
                submitted += 1
            if next_index in done:
                outcome = done.pop(next_index)
                yield outcome
                next_index += 1
                recover(outcome)
            elif started:
                collect()
            elif gave_up is not None:
                raise gave_up
            else:
                return
    finally:
        # The caller may stop early: let the server finish with the transport's slots first.
        while started:
            collect()
