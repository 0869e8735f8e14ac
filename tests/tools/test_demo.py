"""tools.demo refuses nonsense before anything is exported or started, naming the value."""

from __future__ import annotations

import pytest
import torch

from tools.demo import parse_args


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
