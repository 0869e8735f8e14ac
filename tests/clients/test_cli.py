"""`python -m clients COMMAND`: the subcommands parse exactly as the older module entry points do
(one definition of every option), help and bad usage exit as argparse does, `check` tells a
ready server from one without the ensemble and from none at all, and a real stream runs through
the new command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clients import check, cli, command, stream_video, streams
from tools.make_sample_video import make_sample_video
from tools.tritonserver import REPO_ROOT, TritonServer

FRAMES = 4


def parse(argv: list[str]):
    return command.parse(cli.build_parser(), argv)


def python_m(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for name in ("stream", "streams", "check"):
        assert f"python -m clients {name}" in printed
    assert [c.name for c in cli.COMMANDS] == ["stream", "streams", "check"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["serve"], "invalid choice: 'serve'"),
        (["stream"], "the following arguments are required: --video/--source"),
        (["streams", "--source", "a.mp4", "--depth", "0"], "depth must be >= 1, got 0"),
        (["check", "--wait-s", "nan"], "wait_s must be a finite number of seconds >= 0"),
    ],
)
def test_bad_usage_exits_2_naming_the_problem(argv, problem, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        out_dir = ["--out-dir", str(tmp_path / "out")] if argv[:1] == ["streams"] else []
        cli.main([*argv, *out_dir])
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["stream", "streams", "check"])
def test_each_subcommands_help_is_its_modules_documentation(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: python -m clients {name} ")
    assert "Exit codes" in printed and "--url" in printed


def test_subcommands_parse_as_the_older_entry_points():
    argv = ["--url", "host:9", "--transport", "system_shm", "--depth", "3", "--max-frames", "5"]
    argv += ["--timeout-s", "2", "--reconnect-timeout-s", "0", "--video-timeout-s", "3"]
    one = [*argv, "--video", "rtsp://cam//1", "--no-video"]
    assert parse(["stream", *one]) == (stream_video.COMMAND, stream_video.parse_args(one))
    many = [*argv, "--source", "a.mp4", "--source", "webcam:0"]
    assert parse(["streams", *many]) == (streams.COMMAND, streams.parse_args(many))
    assert streams.parse_args(many).sources == ("a.mp4", "webcam:0")


def test_stream_takes_source_as_another_name_for_video():
    _, options = parse(["stream", "--source", "webcam:1"])
    assert options.video == "webcam:1"


def test_the_older_entry_points_still_run_as_modules():
    for module in ("clients.stream_video", "clients.streams"):
        result = python_m(module, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: python -m {module} " in result.stdout


def test_check_without_a_server_is_exit_2_with_a_clear_message():
    result = python_m("clients", "check", "--url", "localhost:1")
    assert result.returncode == check.EXIT_UNREACHABLE
    assert result.stdout.startswith("no Triton server answers at localhost:1")
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_check_says_a_ready_server_is_ready(triton_server):
    report = check.check_server(triton_server.grpc_url)
    assert report.exit_code == check.EXIT_READY
    assert report.lines[0] == f"Triton 2.51.0 at {triton_server.grpc_url}"
    for model in ("rfdetr_seg", "rfdetr_seg_preprocess", "rfdetr_seg_engine",
                  "rfdetr_seg_postprocess"):
        (line,) = [line for line in report.lines if line.split()[0] == model]
        assert line.split()[-1] == "READY", line
    assert report.lines[-1] == "ready: rfdetr_seg and its stages are loaded"


@pytest.mark.integration
def test_check_says_which_models_a_server_lacks(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    with TritonServer(empty, tmp_path / "tritonserver.log") as server:
        result = python_m("clients", "check", "--url", server.grpc_url)
    assert result.returncode == check.EXIT_NOT_READY, result.stderr
    lines = result.stdout.splitlines()
    engine = "rfdetr_seg_engine - MISSING not in the model repository".split()
    assert engine in [line.split() for line in lines]
    assert lines[-1] == (
        "not ready: rfdetr_seg, rfdetr_seg_preprocess, rfdetr_seg_engine, rfdetr_seg_postprocess "
        "(see above)"
    )


@pytest.mark.integration
def test_a_stream_through_the_new_command_line(triton_server, tmp_path):
    video = make_sample_video(tmp_path / "in.mp4", FRAMES, 160, 96, 10)
    out = tmp_path / "out"
    result = python_m(
        "clients", "stream", "--video", str(video), "--url", triton_server.grpc_url,
        "--transport", "system_shm", "--out-dir", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert all("detections" in r for r in records)
    assert (out / "annotated.mp4").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"], summary["exit_code"]) == (FRAMES, 0, 0)
    assert f"frames: {FRAMES}  failed: 0" in result.stdout
