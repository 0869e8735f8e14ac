"""Fixtures of the client tests that need more than the session's server."""

from __future__ import annotations

import pytest

from tests.clients.cli_runs import start_cli
from tools.tritonserver import TritonServer


@pytest.fixture
def server(model_repository, tmp_path):
    """A tritonserver of the test's own, for tests that stop, kill or restart it."""
    server = TritonServer(model_repository, tmp_path / "tritonserver.log")
    with server:
        yield server


@pytest.fixture
def cli_process():
    """cli_runs.start_cli, with what is still running when the test ends (it failed) killed, so
    that no client goes on holding shared memory and the host's cores."""
    started = []

    def start(out, *argv):
        started.append(start_cli(out, *argv))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
