"""The video CLI: end to end through the real server with both transports, failed frames, the
per-request deadline, outputs of an earlier run, and clear errors (exit 2, summary.json saying
why) for inputs it cannot use. Server outages: test_server_outage.py; signals: test_signals.py."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients import runner, stream_video
from clients.server_stats import JPEG_STAGES, STAGES
from clients.video import Video
from tools.make_sample_video import make_sample_video

FRAMES, WIDTH, HEIGHT, FPS = 6, 320, 180, 15


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(
        tmp_path_factory.mktemp("video") / "in.mp4", FRAMES, WIDTH, HEIGHT, FPS
    )


def read_video(path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["grpc", "system_shm", "jpeg"])
def test_video_streams_to_results_video_and_summary(
    triton_server, video, tmp_path, transport, capsys
):
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--transport", transport]
    assert stream_video.main([*argv, "--depth", "2", "--out-dir", str(out)]) == 0

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert all("error" not in r and r["image_size"] == [HEIGHT, WIDTH] for r in records)
    assert [r["timestamp_s"] for r in records] == pytest.approx([i / FPS for i in range(FRAMES)])
    detections = [d for r in records for d in r["detections"]]
    assert detections, "a 0.05 threshold keeps some detections of the random-weights model"
    assert all(d["mask"]["size"] == [HEIGHT, WIDTH] and d["class_name"] for d in detections)

    annotated, fps = read_video(out / "annotated.mp4")
    original, _ = read_video(video)
    assert len(annotated) == FRAMES
    assert annotated[0].shape == (HEIGHT, WIDTH, 3)
    assert fps == pytest.approx(FPS)
    drawn = max(
        np.abs(a.astype(int) - o.astype(int)).mean()
        for a, o in zip(annotated, original, strict=True)
    )
    assert drawn > 2, "annotated.mp4 shows nothing drawn"

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"], summary["transport"]) == (FRAMES, 0, transport)
    assert (summary["exit_code"], summary["stopped_because"]) == (0, None)
    assert (summary["stats_missing"], summary["server_outages"]) == (None, 0)
    assert summary["fps"] == pytest.approx(summary["frames"] / summary["seconds"])
    # The jpeg transport's frames go to the JPEG ensemble, and its statistics are that ensemble's.
    stages = JPEG_STAGES if transport == "jpeg" else STAGES
    assert [s["model"] for s in summary["stages"]] == list(stages)
    # Only this run's requests count: the statistics are a before/after difference.
    assert all(s["inference_count"] == FRAMES for s in summary["stages"])
    assert all(1 <= s["execution_count"] <= FRAMES for s in summary["stages"])
    assert summary["stages"][0]["compute_infer_ms"] > 0

    printed = capsys.readouterr().out
    assert f"frames: {FRAMES}  failed: 0" in printed
    assert all(model in printed for model in stages)


@pytest.mark.integration
def test_failed_frames_are_recorded_and_fail_the_run(triton_server, video, tmp_path, monkeypatch):
    real_stream = runner.stream_frames

    def one_frame_fails(*args, **kwargs):
        for outcome in real_stream(*args, **kwargs):
            if outcome.index == 1:
                outcome.result, outcome.error = None, "injected failure"
            yield outcome

    monkeypatch.setattr(runner, "stream_frames", one_frame_fails)
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--out-dir", str(out)]
    assert stream_video.main([*argv, "--max-frames", "3", "--no-video"]) == 1

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert records[1]["error"] == "injected failure"
    assert "detections" in records[0] and "detections" in records[2]
    assert not (out / "annotated.mp4").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"], summary["exit_code"]) == (3, 1, 1)
    assert summary["stopped_because"] is None


@pytest.mark.integration
def test_the_per_request_deadline_is_an_option(triton_server, video, tmp_path):
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--out-dir", str(out)]
    assert (
        stream_video.main([*argv, "--no-video", "--max-frames", "2", "--timeout-s", "0.001"]) == 1
    )
    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == [0, 1]
    assert all("Deadline Exceeded" in r["error"] for r in records)


@pytest.mark.integration
def test_an_earlier_runs_outputs_never_survive_beside_new_ones(triton_server, video, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("results.jsonl", "annotated.mp4", "summary.json"):
        (out / name).write_text("from an earlier run")
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--out-dir", str(out)]
    assert stream_video.main([*argv, "--max-frames", "1", "--no-video"]) == 0
    assert not (out / "annotated.mp4").exists()
    assert len(read_jsonl(out / "results.jsonl")) == 1
    # A run that cannot even start leaves its own summary, and no results of the one before.
    assert stream_video.main(["--video", str(tmp_path / "gone.mp4"), "--out-dir", str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 2


def run_without_server(tmp_path, caplog, video, *options: str) -> tuple[int, dict | None]:
    """main() against nothing listening; (exit code, summary.json or None)."""
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", "localhost:1", "--out-dir", str(out), *options]
    with caplog.at_level(logging.ERROR):
        code = stream_video.main(argv)
    summary = out / "summary.json"
    return code, json.loads(summary.read_text()) if summary.exists() else None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("not a video", "not a format OpenCV can decode"),
        ("dir", "not a file"),
    ],
    ids=["missing", "garbage", "folder"],
)
def test_unreadable_video_is_a_clear_error_with_a_summary(tmp_path, content, problem, caplog):
    path = tmp_path / "in.mp4"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    code, summary = run_without_server(tmp_path, caplog, path)
    assert code == 2
    assert f"cannot open video {path}: {problem}" in caplog.text
    assert summary["stopped_because"].startswith(f"cannot open video {path}: {problem}")
    assert (summary["frames"], summary["exit_code"]) == (0, 2)


def test_video_without_frames_is_a_clear_error(tmp_path, monkeypatch, caplog):
    class NoFrames:
        def read(self):
            return False, None

        def release(self):
            pass

    monkeypatch.setattr(
        stream_video,
        "open_video",
        lambda source, timeout_s, decoder: Video(source, NoFrames(), 25.0, 0),
    )
    code, summary = run_without_server(tmp_path, caplog, "empty.mp4")
    assert code == 2
    assert "video empty.mp4 has no frames" in caplog.text
    assert summary["stopped_because"] == "video empty.mp4 has no frames"


@pytest.mark.integration
def test_a_video_that_breaks_off_is_reported(triton_server, tmp_path, caplog):
    path = make_sample_video(tmp_path / "in.mp4", 10, 160, 96, 10)
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 2000  # frame data from the third frame or so on
    data[start : len(data) - 2000 : 7] = b"\xff" * len(range(start, len(data) - 2000, 7))
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    argv = ["--video", str(path), "--url", triton_server.grpc_url, "--out-dir", str(out)]
    with caplog.at_level(logging.WARNING):
        stream_video.main([*argv, "--no-video"])
    decoded = len(read_jsonl(out / "results.jsonl"))
    assert decoded < 10
    assert f"video {path} ended after {decoded} of the 10 frames it reports" in caplog.text


def test_unreachable_server_is_a_clear_error_with_a_summary(video, tmp_path, caplog):
    start = time.monotonic()
    code, summary = run_without_server(tmp_path, caplog, video, "--reconnect-timeout-s", "0")
    assert code == 2
    assert time.monotonic() - start < 10
    assert "Triton at localhost:1: not ready after 0 s" in caplog.text
    assert "Connection refused" in summary["stopped_because"]
    assert (summary["frames"], summary["exit_code"]) == (0, 2)


def test_an_unreachable_server_is_retried_until_the_deadline(video, tmp_path, caplog):
    start = time.monotonic()
    code, summary = run_without_server(tmp_path, caplog, video, "--reconnect-timeout-s", "1.5")
    assert code == 2
    assert 1.5 <= time.monotonic() - start < 10
    assert "not ready after 1.5 s" in summary["stopped_because"]


@pytest.mark.parametrize("kind", ["a file", "under a file", "not writable"])
def test_an_unusable_output_folder_is_refused_before_anything_else(video, tmp_path, caplog, kind):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # Root writes anywhere but in sysfs: /sys stands for a folder this user cannot write.
    out = {"a file": blocker, "under a file": blocker / "out", "not writable": Path("/sys")}[kind]
    argv = ["--video", str(video), "--url", "localhost:1", "--out-dir", str(out)]
    with caplog.at_level(logging.ERROR):
        assert stream_video.main([*argv, "--reconnect-timeout-s", "0"]) == 2
    assert f"cannot use output folder {out}" in caplog.text
    assert "Triton" not in caplog.text, "the folder is checked before the server"


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_stream_url_that_cannot_be_opened_is_a_clear_error(tmp_path, caplog, scheme):
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
    url = f"{scheme}://127.0.0.1:{port}/camera"
    code, summary = run_without_server(tmp_path, caplog, url)
    assert code == 2
    assert f"cannot open video {url}" in caplog.text
    assert summary["stopped_because"].startswith(f"cannot open video {url}")


def test_a_silent_stream_url_gives_up_after_the_video_timeout(tmp_path, caplog):
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/camera.mp4"
        start = time.monotonic()
        code, summary = run_without_server(tmp_path, caplog, url, "--video-timeout-s", "1")
        assert time.monotonic() - start < 10
    assert code == 2
    assert f"cannot open video {url}" in summary["stopped_because"]
    assert "within 1 s" in summary["stopped_because"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--depth", "0"], "depth must be >= 1, got 0"),
        (["--max-frames", "0"], "max_frames must be >= 1, got 0"),
        (["--timeout-s", "0"], "timeout_s must be a finite number of seconds > 0, got 0.0"),
        (["--timeout-s", "nan"], "timeout_s must be a finite number of seconds > 0, got nan"),
        (
            ["--reconnect-timeout-s", "-1"],
            "reconnect_timeout_s must be a finite number of seconds >= 0",
        ),
        (["--video-timeout-s", "inf"], "video_timeout_s must be a finite number of seconds > 0"),
        (["--transport", "cuda_shm"], "invalid choice: 'cuda_shm'"),
    ],
)
def test_nonsensical_options_are_refused_before_anything_runs(tmp_path, argv, problem, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        stream_video.main(["--video", "x.mp4", "--out-dir", str(out), *argv])
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        stream_video.main(["--help"])
    printed = capsys.readouterr().out
    assert '"exit_code"' in printed and '"stopped_because"' in printed
    for line in (
        "0    every frame was served",
        "1    the run went through, but some frames failed",
    ):
        assert line in printed
    assert "2    could not run" in printed
    assert "130  stopped by SIGINT" in printed and "143 by SIGTERM" in printed


def test_the_command_line_becomes_the_options(tmp_path):
    argv = ["--video", "rtsp://camera//stream", "--url", "host:9", "--transport", "system_shm"]
    argv += ["--depth", "3", "--out-dir", str(tmp_path), "--max-frames", "5", "--no-video"]
    argv += ["--timeout-s", "2.5", "--reconnect-timeout-s", "0", "--video-timeout-s", "3"]
    argv += ["--decoder", "opencv"]
    expected = ("host:9", "system_shm", 3, tmp_path, 5, 2.5, 0.0, 3.0, "opencv")
    assert stream_video.parse_args(argv) == stream_video.StreamOptions(
        *expected, video="rtsp://camera//stream", write_video=False
    )
    defaults = ("localhost:8001", "grpc", 2, Path("outputs"), None, 60.0, 30.0, 10.0, "opencv")
    assert stream_video.parse_args(["--video", "in.mp4"]) == stream_video.StreamOptions(
        *defaults, video="in.mp4", write_video=True
    )


def test_function_reports_an_unreadable_video_with_exit_code_2(tmp_path, caplog):
    path = tmp_path / "missing.mp4"
    with caplog.at_level(logging.ERROR):
        code = stream_video.stream_video(path, "localhost:1", out_dir=tmp_path / "out")
    assert code == 2
    assert f"cannot open video {path}" in caplog.text
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["exit_code"] == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"depth": 0}, "depth must be >= 1"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
        ({"transport": "cuda_shm"}, "unknown transport 'cuda_shm'"),
        ({"timeout_s": -1.0}, "timeout_s must be"),
        ({"reconnect_timeout_s": float("nan")}, "reconnect_timeout_s must be"),
        ({"video_timeout_s": 0}, "video_timeout_s must be"),
    ],
)
def test_function_rejects_bad_arguments_before_touching_anything(tmp_path, change, problem):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=problem):
        stream_video.stream_video(tmp_path / "in.mp4", "localhost:1", out_dir=out, **change)
    assert not out.exists()
