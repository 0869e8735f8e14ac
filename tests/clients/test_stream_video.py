"""The video CLI: end to end through the real server with both transports, failed frames,
and clear errors for inputs it cannot use."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients import stream_video
from clients.server_stats import STAGES
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
@pytest.mark.parametrize("transport", ["grpc", "system_shm"])
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
    assert summary["fps"] == pytest.approx(summary["frames"] / summary["seconds"])
    assert [s["model"] for s in summary["stages"]] == list(STAGES)
    # Only this run's requests count: the statistics are a before/after difference.
    assert all(s["inference_count"] == FRAMES for s in summary["stages"])
    assert all(1 <= s["execution_count"] <= FRAMES for s in summary["stages"])
    assert summary["stages"][0]["compute_infer_ms"] > 0

    printed = capsys.readouterr().out
    assert f"frames: {FRAMES}  failed: 0" in printed
    assert all(model in printed for model in STAGES)


@pytest.mark.integration
def test_failed_frames_are_recorded_and_fail_the_run(triton_server, video, tmp_path, monkeypatch):
    real_stream = stream_video.stream_frames

    def one_frame_fails(*args, **kwargs):
        for outcome in real_stream(*args, **kwargs):
            if outcome.index == 1:
                outcome.result, outcome.error = None, "injected failure"
            yield outcome

    monkeypatch.setattr(stream_video, "stream_frames", one_frame_fails)
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--out-dir", str(out)]
    assert stream_video.main([*argv, "--max-frames", "3", "--no-video"]) == 1

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert records[1]["error"] == "injected failure"
    assert "detections" in records[0] and "detections" in records[2]
    assert not (out / "annotated.mp4").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"]) == (3, 1)


@pytest.mark.parametrize("content", [None, "not a video"], ids=["missing", "garbage"])
def test_unreadable_video_is_a_clear_error(tmp_path, content, caplog):
    path = tmp_path / "in.mp4"
    if content is not None:
        path.write_text(content)
    with caplog.at_level(logging.ERROR):
        code = stream_video.main(["--video", str(path), "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert f"cannot open video {path}" in caplog.text
    assert not (tmp_path / "out").exists()


def test_video_without_frames_is_a_clear_error(tmp_path, monkeypatch, caplog):
    class NoFrames:
        def read(self):
            return False, None

        def release(self):
            pass

    monkeypatch.setattr(stream_video, "open_video", lambda path: (NoFrames(), 25.0, 0))
    with caplog.at_level(logging.ERROR):
        assert stream_video.main(["--video", "empty.mp4", "--out-dir", str(tmp_path)]) == 2
    assert "video empty.mp4 has no frames" in caplog.text


def test_unreachable_server_is_a_clear_error(video, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        code = stream_video.main(
            ["--video", str(video), "--url", "localhost:1", "--out-dir", str(tmp_path)]
        )
    assert code == 2
    assert "Triton at localhost:1" in caplog.text


@pytest.mark.parametrize("flag", ["--depth", "--max-frames"])
def test_counts_below_one_are_rejected(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        stream_video.main(["--video", "x.mp4", flag, "0"])
    assert exit_info.value.code == 2
    assert f"{flag} must be >= 1" in capsys.readouterr().err


def test_main_hands_its_arguments_to_stream_video(tmp_path, monkeypatch):
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return 1

    monkeypatch.setattr(stream_video, "stream_video", record)
    argv = ["--video", "rtsp://camera//stream", "--url", "host:9", "--transport", "system_shm"]
    argv += ["--depth", "3", "--out-dir", str(tmp_path), "--max-frames", "5", "--no-video"]
    assert stream_video.main(argv) == 1
    assert calls == [
        (
            ("rtsp://camera//stream", "host:9"),
            {
                "transport": "system_shm",
                "depth": 3,
                "out_dir": tmp_path,
                "max_frames": 5,
                "write_video": False,
            },
        )
    ]
    calls.clear()
    stream_video.main(["--video", "in.mp4"])
    assert calls == [
        (
            ("in.mp4", "localhost:8001"),
            {
                "transport": "grpc",
                "depth": 2,
                "out_dir": Path("outputs"),
                "max_frames": None,
                "write_video": True,
            },
        )
    ]


def test_function_reports_an_unreadable_video_with_exit_code_2(tmp_path, caplog):
    path = tmp_path / "missing.mp4"
    with caplog.at_level(logging.ERROR):
        code = stream_video.stream_video(path, "localhost:1", out_dir=tmp_path / "out")
    assert code == 2
    assert f"cannot open video {path}" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"depth": 0}, "depth must be >= 1"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
        ({"transport": "cuda_shm"}, "unknown transport 'cuda_shm'"),
    ],
)
def test_function_rejects_bad_arguments_before_touching_anything(tmp_path, change, problem):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=problem):
        stream_video.stream_video(tmp_path / "in.mp4", "localhost:1", out_dir=out, **change)
    assert not out.exists()
