"""Waiting for the server: readiness retried with doubling pauses up to a deadline, a stop request
ending the wait, and which errors say the server went away. Fakes only: no server, no sleeping."""

from __future__ import annotations

import threading
import time

import pytest
from tritonclient.utils import InferenceServerException

from clients.reconnect import Reconnect, ServerUnavailable, server_lost, wait_until_ready

REFUSED = (
    "[StatusCode.UNAVAILABLE] failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:8001: Failed to connect to remote host: Connection refused"
)


class FlakyServer:
    """A client stand-in (test fake): unreachable for the first `unreachable` checks, then its
    model is not ready for `not_ready` more, then ready."""

    def __init__(self, unreachable: int = 0, not_ready: int = 0):
        self.answers = ["down"] * unreachable + [False] * not_ready
        self.checks = 0

    def is_model_ready(self, model_name, client_timeout=None):
        assert client_timeout is not None, "a check must not hang on a hung server"
        self.checks += 1
        answer = self.answers.pop(0) if self.answers else True
        if answer == "down":
            raise InferenceServerException(REFUSED.split("] ", 1)[1], "StatusCode.UNAVAILABLE")
        return answer


class NoWait(threading.Event):
    """A stop event whose pauses return at once, recording how long they were asked to be."""

    def __init__(self):
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout=None):
        self.pauses.append(timeout)
        return self.is_set()


def test_readiness_is_retried_with_doubling_pauses_until_ready():
    client, stop = FlakyServer(unreachable=3, not_ready=2), NoWait()
    assert wait_until_ready(client, deadline_s=60, stop=stop) is True
    assert client.checks == 6
    assert stop.pauses == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_pauses_stop_growing_at_the_cap():
    stop = NoWait()
    wait_until_ready(FlakyServer(unreachable=6), deadline_s=60, stop=stop, max_delay_s=1.0)
    assert stop.pauses == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]


def test_a_ready_server_is_checked_once_without_pausing():
    client, stop = FlakyServer(), NoWait()
    assert wait_until_ready(client, deadline_s=0, stop=stop) is True
    assert (client.checks, stop.pauses) == (1, [])


def test_past_the_deadline_the_last_reason_is_raised():
    client = FlakyServer(unreachable=1000)
    start = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"not ready after 0.3 s: .*Connection refused"):
        wait_until_ready(client, deadline_s=0.3, first_delay_s=0.05)
    assert 0.3 <= time.monotonic() - start < 1.5
    assert client.checks > 2


def test_a_zero_deadline_checks_once():
    client = FlakyServer(not_ready=1)
    with pytest.raises(ServerUnavailable, match="model rfdetr_seg is not ready"):
        wait_until_ready(client, deadline_s=0)
    assert client.checks == 1


def test_a_stop_request_ends_the_wait_at_once():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    assert wait_until_ready(FlakyServer(unreachable=1000), deadline_s=60, stop=stop) is False
    assert time.monotonic() - start < 2


def test_reconnect_counts_the_outages_it_waited_through():
    reconnect = Reconnect(FlakyServer(unreachable=1), deadline_s=60, stop=NoWait())
    assert reconnect() is True
    assert reconnect() is True
    assert reconnect.outages == 2


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (REFUSED, True),
        ("[StatusCode.UNAVAILABLE] Socket closed", True),
        ("[StatusCode.NOT_FOUND] Unable to find shared memory region: 'rfdetr_frame_1_0'", True),
        ("[StatusCode.DEADLINE_EXCEEDED] Deadline Exceeded", False),
        ("[StatusCode.INVALID_ARGUMENT] image is empty: 0x5 pixels", False),
        ("ValueError: frame 4 refused", False),
    ],
)
def test_only_errors_that_say_the_server_went_away_count_as_lost(error, lost):
    assert server_lost(error) is lost
