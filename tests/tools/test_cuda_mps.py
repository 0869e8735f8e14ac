"""tools.cuda_mps and TritonServer(cuda_mps=True): the daemon is started in the foreground with a
pipe folder of its own, the server's environment (and only the server's) names it, it is quit when
the server stops, a daemon that dies is reported with its log, and a host without MPS serves
without it. The daemon here is a fake (unit test only): this host has no GPU driver."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from tests.tools.test_tritonserver import write_echo_model
from tools.cuda_mps import CONTROL_BINARY, CudaMpsDaemon, CudaMpsError
from tools.tritonserver import TritonServer

# A fake nvidia-cuda-mps-control (unit test only). `-f`: records its arguments and MPS variables,
# opens the pipe folder's `control`, and runs until told to quit. No argument: a control command
# from stdin ("quit"), recorded and passed on through the pipe folder.
FAKE_CONTROL = """#!/usr/bin/env python3
import json, os, sys, time
from pathlib import Path
pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
record = Path(os.environ["FAKE_MPS_RECORD"])
if sys.argv[1:] == ["-f"]:
    if os.environ.get("FAKE_MPS_FAIL"):
        sys.exit(3)
    with record.open("a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "pipe": str(pipe), "log": os.environ["CUDA_MPS_LOG_DIRECTORY"]}) + "\\n")
    (pipe / "control").write_text("")
    while not (pipe / "quit").exists():
        time.sleep(0.02)
else:
    command = sys.stdin.read().strip()
    with record.open("a") as f:
        f.write(json.dumps({"command": command}) + "\\n")
    (pipe / command).write_text("")
"""


@pytest.fixture
def fake_control(tmp_path, monkeypatch) -> Path:
    """The fake daemon first on PATH; returns the file where it records its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    binary = bin_dir / CONTROL_BINARY
    binary.write_text(FAKE_CONTROL)
    binary.chmod(0o755)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_RECORD", str(record))
    return record


def calls(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_the_daemon_runs_in_its_own_folder_until_quit(fake_control, tmp_path):
    daemon = CudaMpsDaemon(tmp_path / "mps-log")
    env = daemon.start()
    pipe = Path(env["CUDA_MPS_PIPE_DIRECTORY"])
    assert env["CUDA_MPS_LOG_DIRECTORY"] == str(tmp_path / "mps-log")
    assert pipe.name.startswith("rfdetr-mps-") and len(str(pipe / "control")) < 108  # a socket path
    process = daemon._process
    assert process.poll() is None
    assert calls(fake_control) == [
        {"argv": ["-f"], "pipe": env["CUDA_MPS_PIPE_DIRECTORY"], "log": env["CUDA_MPS_LOG_DIRECTORY"]}
    ]
    daemon.stop()
    assert process.poll() == 0  # quit through its pipe, not killed
    assert calls(fake_control)[-1] == {"command": "quit"}
    assert not pipe.exists()
    daemon.stop()  # twice is harmless


def test_a_daemon_that_dies_is_reported(fake_control, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    (tmp_path / "mps-log").mkdir()
    (tmp_path / "mps-log" / "control.log").write_text("MPS is not supported on this GPU\n")
    daemon = CudaMpsDaemon(tmp_path / "mps-log")
    with pytest.raises(CudaMpsError, match=r"did not open .*/control:\nMPS is not supported on this GPU"):
        daemon.start()
    assert not daemon.pipe_dir.exists()


def test_a_host_without_mps_gets_no_daemon(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-cuda-mps-control there
    with caplog.at_level(logging.WARNING):
        daemon = CudaMpsDaemon(tmp_path / "mps-log")
        assert daemon.start() == {}
    assert not daemon.pipe_dir.exists()
    assert "serving without CUDA MPS" in caplog.text


def server_environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


@pytest.mark.integration
def test_the_server_is_the_daemons_client_and_quits_it(fake_control, tmp_path):
    write_echo_model(tmp_path / "models")
    server = TritonServer(tmp_path / "models", tmp_path / "logs" / "server.log", cuda_mps=True)
    with server:
        assert server.under_cuda_mps
        assert "under its own CUDA MPS daemon" in server.options_text()
        started = calls(fake_control)[0]
        assert Path(started["log"]).parent == tmp_path / "logs"  # beside the server's log
        assert server_environment(server.pid)["CUDA_MPS_PIPE_DIRECTORY"] == started["pipe"]
        assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ  # this process is no client
    assert calls(fake_control)[-1] == {"command": "quit"}
    assert not server.under_cuda_mps


@pytest.mark.integration
def test_without_mps_the_server_still_serves(tmp_path):
    if shutil.which(CONTROL_BINARY):
        pytest.skip(f"this host has {CONTROL_BINARY}: a real daemon would start")
    write_echo_model(tmp_path / "models")
    with TritonServer(tmp_path / "models", tmp_path / "server.log", cuda_mps=True) as server:
        assert not server.under_cuda_mps
        assert "CUDA_MPS_PIPE_DIRECTORY" not in server_environment(server.pid)
        assert server.options_text().endswith("no CUDA MPS")
