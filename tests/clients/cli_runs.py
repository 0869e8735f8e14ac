"""What the client integration tests share: the CLI started as its own process (so that it can be
signalled as a user or a supervisor would) or cut at a known frame in this one, waits on what a
run writes, and the shared-memory regions a client process left on this host or on the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tritonclient.grpc as grpcclient

from clients import runner

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_cli(out: Path, *argv: str) -> subprocess.Popen:
    """`python -m clients ARGV --out-dir OUT` in its own process; its stdout and stderr go to
    stdout.txt and stderr.txt beside `out`."""
    out.mkdir(parents=True)
    return subprocess.Popen(
        [sys.executable, "-m", "clients", *argv, "--out-dir", str(out)],
        cwd=REPO_ROOT,
        stdout=(out.parent / "stdout.txt").open("w"),
        stderr=(out.parent / "stderr.txt").open("w"),
    )


def after_frame(monkeypatch, index: int, action: Callable[[], None]) -> None:
    """Runs action() once the outcome of frame `index` was handed to the CLI, in every stream
    the CLI runs in this process (on that stream's thread)."""
    real_stream = runner.stream_frames

    def stream(*args, **kwargs):
        for outcome in real_stream(*args, **kwargs):
            yield outcome
            if outcome.index == index:
                action()

    monkeypatch.setattr(runner, "stream_frames", stream)


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Polls `condition` until it holds; fails the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s"
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    """The lines written to `path` so far (none while it does not exist)."""
    return path.read_text().splitlines() if path.exists() else []


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in lines(path)]


def region_prefix(pid: int) -> str:
    """How clients.transports names the regions of process `pid`: rfdetr_frame_<pid>_<n>."""
    return f"rfdetr_frame_{pid}_"


def regions_in_dev_shm(pid: int | None = None) -> list[str]:
    """The POSIX shared-memory segments of process `pid` (default: this one) in /dev/shm."""
    prefix = region_prefix(os.getpid() if pid is None else pid)
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def regions_on_server(url: str, pid: int | None = None) -> list[str]:
    """The system shared-memory regions of process `pid` (default: of anyone) that the server at
    `url` has registered."""
    prefix = "" if pid is None else region_prefix(pid)
    with grpcclient.InferenceServerClient(url) as client:
        regions = client.get_system_shared_memory_status(as_json=True).get("regions", {})
    return sorted(name for name in regions if name.startswith(prefix))
