"""tools.demo refuses nonsense before anything is exported or started, naming the value, and a
SIGTERM stops the server it started."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch

from backends.contract import JPEG_ENSEMBLE
from tests.tools.test_tritonserver import process_group_alive, write_echo_model
from tools.demo import parse_args, repository_spec
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD
from tools.tritonserver import REPO_ROOT


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--score-threshold", "nan"], "score threshold must be a number in [0, 1], got nan"),
        (["--score-threshold", "-0.5"], "got -0.5"),
        (["--checkpoint", "/no/such.pth"], "checkpoint not found: /no/such.pth"),
        (["--video", "/no/such.mp4"], "video not found: /no/such.mp4"),
        (["--depth", "0"], "--depth must be >= 1, got 0"),
        (["--target", "jetson", "--engine", "onnx"], "target jetson serves the engines ['tensorrt', 'torch'], not 'onnx'"),
        (["--size", "huge"], "invalid choice: 'huge'"),
        (["--target", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_auto_target_follows_the_host():
    assert parse_args([]).target == ("gpu" if torch.cuda.is_available() else "cpu")


def test_stream_urls_are_not_checked_as_files():
    assert parse_args(["--video", "rtsp://camera/stream"]).video == "rtsp://camera/stream"


@pytest.mark.parametrize("transport, jpeg", [("system_shm", False), ("grpc", False), ("jpeg", True)])
def test_the_jpeg_transport_gets_a_repository_with_the_jpeg_ensemble(nano_export, transport, jpeg):
    spec = repository_spec(parse_args(["--target", "cpu", "--transport", transport]), nano_export)
    assert spec.jpeg == jpeg and (JPEG_ENSEMBLE in spec.values()) == jpeg
    assert spec.postprocess.score_threshold == RANDOM_WEIGHTS_THRESHOLD  # no checkpoint: random weights


SERVE_UNTIL_TERMINATED = """
import signal, sys, time
from pathlib import Path
from tools.demo import exit_on_sigterm
from tools.tritonserver import TritonServer
signal.signal(signal.SIGTERM, exit_on_sigterm)
with TritonServer(Path(sys.argv[1]), Path(sys.argv[2])) as server:
    print(server.pid, flush=True)
    for _ in range(1200):  # short sleeps: a signal that lands on a gRPC thread wakes no long one
        time.sleep(0.1)
"""


@pytest.mark.integration
def test_sigterm_stops_the_server_on_the_way_out(tmp_path):
    """A demo that a supervisor terminates leaves no tritonserver (nor stub) behind."""
    write_echo_model(tmp_path / "models")
    demo = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_TERMINATED, str(tmp_path / "models"), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    server_pid = int(demo.stdout.readline())
    assert process_group_alive(server_pid)
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(timeout=60) == 143
    assert not process_group_alive(server_pid)
