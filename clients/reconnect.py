"""Waiting for a server that is not there (yet, or any more): readiness checks with exponential
backoff up to a deadline, and telling a frame that failed because the server went away from one
that failed on its own."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract

logger = logging.getLogger(__name__)


class ServerUnavailable(RuntimeError):
    """The server was not ready before the deadline; the message says for how long and why."""


def server_lost(error: str) -> bool:
    """Whether a failed frame's error says the server went away (unreachable), or came back
    without our shared-memory regions (it restarted), rather than anything about the frame."""
    return "StatusCode.UNAVAILABLE" in error or "Unable to find shared memory region" in error


def wait_until_ready(
    client: grpcclient.InferenceServerClient,
    deadline_s: float,
    stop: threading.Event | None = None,
    model_name: str = contract.ENSEMBLE,
    first_delay_s: float = 0.25,
    max_delay_s: float = 4.0,
) -> bool:
    """Checks that `model_name` is ready, again and again with pauses that double from
    first_delay_s up to max_delay_s, until it is or deadline_s has passed (0: check once).

    Returns:
        True once ready; False as soon as `stop` is set (the caller was asked to stop).

    Raises:
        ServerUnavailable: still not ready at the deadline; the message has the last reason.
    """
    stop = stop or threading.Event()
    deadline = time.monotonic() + deadline_s
    delay = first_delay_s
    while True:
        left = deadline - time.monotonic()
        problem = _not_ready_because(client, model_name, max(left, 1.0))
        if problem is None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServerUnavailable(f"not ready after {deadline_s:g} s: {problem}")
        pause = min(delay, left)
        logger.warning("server not ready (%s); retrying in %.2f s", problem, pause)
        # An Event's wait, not a sleep: a stop request (a signal) ends the pause at once.
        if stop.wait(pause):
            return False
        delay = min(2 * delay, max_delay_s)


def _not_ready_because(
    client: grpcclient.InferenceServerClient, model_name: str, timeout_s: float
) -> str | None:
    try:
        if client.is_model_ready(model_name, client_timeout=timeout_s):
            return None
        return f"model {model_name} is not ready"
    except InferenceServerException as error:
        return str(error)


@dataclass
class Reconnect:
    """What a stream calls after a frame failed because the server went away: waits for the
    server (wait_until_ready, the same deadline for every outage) and counts the outages."""

    client: grpcclient.InferenceServerClient
    deadline_s: float
    stop: threading.Event | None = None
    model_name: str = contract.ENSEMBLE
    outages: int = 0

    def __call__(self) -> bool:
        """True once the server is ready again, False when asked to stop first.

        Raises:
            ServerUnavailable: not back within deadline_s.
        """
        self.outages += 1
        logger.warning("the server went away; waiting up to %g s for it", self.deadline_s)
        return wait_until_ready(self.client, self.deadline_s, self.stop, self.model_name)
