"""stream_frames: frame order, requests in flight, slot reuse, failures, stuck clients, a server
that goes away, stop requests.

A fake client answers out of order on its own threads, to pin the ordering and slot rules
down deterministically; two tests run against the real server.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends.results import SegmentationResult, encode_result
from clients.reconnect import ServerUnavailable
from clients.stream import stream_frames
from clients.transports import PlainGrpcTransport, Transport


def frame(index: int, height: int = 4, width: int = 6) -> np.ndarray:
    """A frame that carries its index in its first pixel."""
    image = np.zeros((height, width, 3), np.uint8)
    image[0, 0, 0] = index
    return image


class SlotTransport(Transport):
    """Inputs are (slot, frame index); a frame whose index is in `refuse` cannot be sent."""

    def __init__(self, refuse: frozenset[int] = frozenset()):
        self.refuse = refuse
        self.registrations = 0

    def register_again(self):
        self.registrations += 1

    def inputs_for(self, slot, image):
        index = int(image[0, 0, 0])
        if index in self.refuse:
            raise ValueError(f"frame {index} refused")
        return [slot, index]


class EmptyResponse:
    """An InferResult stand-in: no detections for a frame of the given size, every output
    under the leading batch axis of 1 the ensemble serves."""

    def __init__(self, height: int, width: int):
        encoded = encode_result(SegmentationResult(image_size=(height, width)))
        self.outputs = {name: array[None] for name, array in encoded.items()}

    def as_numpy(self, name):
        return self.outputs.get(name)


class FakeClient:
    """Answers each request after delays[index] seconds on a timer thread (index in `fail`:
    with an error; None delay: never), recording requests in flight and slots in use."""

    def __init__(self, delays: dict[int, float | None], fail: frozenset[int] = frozenset()):
        self.delays = delays
        self.fail = fail
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.busy_slots: set[int] = set()
        self.slot_clashes: list[int] = []
        self.deadlines: set[float] = set()
        self.sent: list[int] = []
        self.parameters: list[dict | None] = []  # each request's

    def error_for(self, index: int) -> str | None:
        return f"frame {index} exploded" if index in self.fail else None

    def async_infer(self, model_name, inputs, callback, client_timeout=None, parameters=None):
        slot, index = inputs
        error = self.error_for(index)
        with self.lock:
            self.sent.append(index)
            self.parameters.append(parameters)
            self.deadlines.add(client_timeout)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if slot in self.busy_slots:
                self.slot_clashes.append(index)
            self.busy_slots.add(slot)

        def finish():
            with self.lock:
                self.in_flight -= 1
                self.busy_slots.discard(slot)
            if error is not None:
                callback(None, InferenceServerException(error))
            else:
                callback(EmptyResponse(4, 6), None)

        if self.delays[index] is not None:
            threading.Timer(self.delays[index], finish).start()


def test_outcomes_come_in_frame_order_with_at_most_depth_in_flight():
    # Later frames answer first: without reordering the stream would come out backwards.
    client = FakeClient({i: 0.02 * (8 - i) for i in range(8)})
    outcomes = list(stream_frames(client, (frame(i) for i in range(8)), SlotTransport(), depth=3))
    assert [o.index for o in outcomes] == list(range(8))
    assert all(o.ok and o.result.image_size == (4, 6) for o in outcomes)
    assert [int(o.frame[0, 0, 0]) for o in outcomes] == list(range(8))
    assert client.peak == 3
    assert client.slot_clashes == []
    assert outcomes[0].latency_s >= 0.15
    assert client.deadlines == {60.0}


def test_failed_frames_yield_their_error_in_place():
    client = FakeClient({i: 0.01 for i in range(6)}, fail=frozenset({2}))
    transport = SlotTransport(refuse=frozenset({4}))
    outcomes = list(stream_frames(client, (frame(i) for i in range(6)), transport, depth=2))
    assert [o.index for o in outcomes] == list(range(6))
    assert [o.ok for o in outcomes] == [True, True, False, True, False, True]
    assert "frame 2 exploded" in outcomes[2].error
    assert outcomes[2].result is None
    assert outcomes[4].error == "ValueError: frame 4 refused"


def test_a_client_that_never_answers_raises_instead_of_hanging():
    client = FakeClient({0: 0.01, 1: None, 2: 0.01})
    stream = stream_frames(client, (frame(i) for i in range(3)), SlotTransport(), timeout_s=0.2)
    start = time.monotonic()
    assert next(stream).index == 0
    with pytest.raises(TimeoutError, match=r"frames \[1"):
        next(stream)
    assert time.monotonic() - start < 3.0  # 2 x the deadline + 1 s of grace, then it gives up


def test_stopping_early_waits_for_the_requests_in_flight():
    client = FakeClient({0: 0.01, 1: 0.2, 2: 0.2, 3: 0.01})
    stream = stream_frames(client, (frame(i) for i in range(4)), SlotTransport(), depth=2)
    assert next(stream).index == 0
    stream.close()
    # Frame 1 (and 2, sent once 0 was yielded) completed before close() returned: the caller may
    # now free the transport's slots safely.
    assert client.in_flight == 0


def test_depth_below_one_is_rejected():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(stream_frames(FakeClient({}), [], SlotTransport(), depth=0))


class OutageClient(FakeClient):
    """Answers every frame after 10 ms, but from frame `down_at` on the server is gone (each
    request fails as an unreachable server's does) until reconnect() finds it back."""

    def __init__(self, frames: int, down_at: int):
        super().__init__({i: 0.01 for i in range(frames)})
        self.down_at = down_at
        self.down = False
        self.reconnects = 0

    def error_for(self, index):
        self.down = self.down or index == self.down_at
        return "[StatusCode.UNAVAILABLE] failed to connect to all addresses" if self.down else None

    def reconnect(self) -> bool:
        self.reconnects += 1
        self.down = False
        return True


def failed(outcomes) -> list[int]:
    return [o.index for o in outcomes if not o.ok]


def test_a_server_that_went_away_is_reconnected_once_and_the_stream_goes_on():
    client, transport = OutageClient(10, down_at=3), SlotTransport()
    stream = stream_frames(
        client, (frame(i) for i in range(10)), transport, depth=2, reconnect=client.reconnect
    )
    outcomes = list(stream)
    assert [o.index for o in outcomes] == list(range(10))
    # 3 and 4 were sent while it was gone: both failed, one outage, one re-registration.
    assert failed(outcomes) == [3, 4]
    assert "UNAVAILABLE" in outcomes[4].error
    assert (client.reconnects, transport.registrations) == (1, 1)


def test_giving_up_on_the_server_yields_the_frames_in_flight_then_raises():
    client = OutageClient(10, down_at=3)

    def give_up():
        raise ServerUnavailable("not ready after 1 s: gone")

    stream = stream_frames(
        client, (frame(i) for i in range(10)), SlotTransport(), reconnect=give_up
    )
    outcomes = []
    with pytest.raises(ServerUnavailable, match="gone"):
        outcomes.extend(stream)
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert failed(outcomes) == [3, 4]
    assert client.sent == [0, 1, 2, 3, 4], "no frame sent after giving up"


def test_a_stop_while_waiting_for_the_server_sends_nothing_more():
    client, transport, stop = OutageClient(10, down_at=3), SlotTransport(), threading.Event()

    def stopped_while_waiting():
        stop.set()
        return False

    outcomes = list(
        stream_frames(
            client,
            (frame(i) for i in range(10)),
            transport,
            reconnect=stopped_while_waiting,
            stop=stop,
        )
    )
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert transport.registrations == 0
    assert client.sent == [0, 1, 2, 3, 4]


def test_a_stop_request_ends_the_stream_after_the_frames_in_flight():
    client, stop = FakeClient({i: 0.05 for i in range(10)}), threading.Event()
    outcomes = []
    for outcome in stream_frames(client, (frame(i) for i in range(10)), SlotTransport(), stop=stop):
        outcomes.append(outcome)
        if outcome.index == 1:
            stop.set()
    # Frame 2 was in flight when the stop came: it is answered; nothing after it is sent.
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert all(o.ok for o in outcomes)
    assert client.sent == [0, 1, 2]


def test_a_frame_that_failed_on_its_own_calls_no_reconnect():
    client = FakeClient({i: 0.01 for i in range(4)}, fail=frozenset({1}))
    calls = []
    outcomes = list(
        stream_frames(
            client, (frame(i) for i in range(4)), SlotTransport(), reconnect=lambda: calls.append(1)
        )
    )
    assert failed(outcomes) == [1]
    assert calls == []


@pytest.fixture
def client(triton_server):
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        yield client


@pytest.mark.integration
def test_real_server_results_come_in_frame_order(client):
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (64, 200), (90, 90)]
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    outcomes = list(stream_frames(client, frames, PlainGrpcTransport(), depth=2))
    assert [o.error for o in outcomes] == [None] * 3
    # Each result carries its own frame's size: a reordering would show.
    assert [o.result.image_size for o in outcomes] == sizes
    assert all(o.latency_s > 0 for o in outcomes)


@pytest.mark.integration
def test_real_server_errors_are_reported_per_frame(client):
    frames = [frame(i) for i in range(2)]
    outcomes = list(stream_frames(client, frames, PlainGrpcTransport(), model_name="no_such_model"))
    assert [o.index for o in outcomes] == [0, 1]
    assert all(not o.ok and "no_such_model" in o.error for o in outcomes)
