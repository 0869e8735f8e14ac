"""The many-streams CLI: concurrent streams of every source kind through the real server, a stream
that dies while the others go on, shared memory released, the top summary and exit codes, names,
bad options, the status lines and the supervision adapter."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from backends.results import SegmentationResult
from backends.rle import encode_mask
from clients import streams
from clients.status import StatusDisplay, StreamStatus
from clients.stream import FrameOutcome
from tests.clients.cli_runs import read_jsonl, regions_in_dev_shm
from tools.make_sample_video import make_sample_video


def image_folder(path: Path, count: int, corrupt: int | None = None) -> Path:
    """`count` images 000.png..., the one at `corrupt` not an image at all."""
    path.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        if i == corrupt:
            (path / f"{i:03d}.png").write_bytes(b"not a png")
        else:
            cv2.imwrite(str(path / f"{i:03d}.png"), rng.integers(0, 256, (64, 96, 3), np.uint8))
    (path / "notes.txt").write_text("not an image: ignored")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["grpc", "system_shm", "jpeg"])
def test_streams_run_concurrently_and_a_dead_one_leaves_the_others_going(
    triton_server, tmp_path, transport, capsys
):
    video = make_sample_video(tmp_path / "a.mp4", 5, 160, 96, 10)
    folder = image_folder(tmp_path / "shots", 4, corrupt=2)
    missing = tmp_path / "gone.mp4"
    out = tmp_path / "out"
    argv = ["--url", triton_server.grpc_url, "--transport", transport, "--out-dir", str(out)]
    for source in (video, folder, missing, video):
        argv += ["--source", str(source)]
    assert streams.main(argv) == 1

    # The same video twice is two streams, in folders of their own.
    assert sorted(p.name for p in out.iterdir()) == ["a", "a-2", "gone", "shots", "summary.json"]
    for name in ("a", "a-2"):
        records = read_jsonl(out / name / "results.jsonl")
        assert [r["frame"] for r in records] == list(range(5))
        assert all("detections" in r for r in records)
        assert records[1]["timestamp_s"] == pytest.approx(0.1)
    shots = read_jsonl(out / "shots" / "results.jsonl")
    assert [r["frame"] for r in shots] == list(range(4))
    assert shots[2]["error"] == f"cannot read image {folder / '002.png'}"
    assert all("detections" in shots[i] for i in (0, 1, 3))
    assert all(r["timestamp_s"] is None for r in shots), "images have no time"
    assert json.loads((out / "shots" / "summary.json").read_text())["failed"] == 1
    dead = json.loads((out / "gone" / "summary.json").read_text())
    assert dead["stopped_because"].startswith(f"cannot open video {missing}: no such file")
    assert (dead["frames"], dead["exit_code"]) == (0, 2)

    top = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in top["streams"]] == ["a", "shots", "gone", "a-2"]
    assert [s["exit_code"] for s in top["streams"]] == [0, 1, 2, 0]
    assert (top["frames"], top["failed"], top["dropped"], top["exit_code"]) == (14, 1, 0, 1)
    assert regions_in_dev_shm() == [], "every stream released its shared memory"
    printed = capsys.readouterr()
    assert "all streams:" in printed.out and "exit code 1" in printed.out
    assert "a-2: done" in printed.err, "the status lines go to stderr"


def test_no_stream_that_can_run_is_exit_2(tmp_path, caplog):
    out = tmp_path / "out"
    argv = ["--url", "localhost:1", "--reconnect-timeout-s", "0", "--out-dir", str(out)]
    empty = tmp_path / "empty"
    empty.mkdir()
    video = make_sample_video(tmp_path / "a.mp4", 2, 64, 48, 10)
    with caplog.at_level(logging.ERROR):
        code = streams.main([*argv, "--source", str(video), "--source", str(empty)])
    assert code == 2
    top = json.loads((out / "summary.json").read_text())
    reasons = [s["stopped_because"] for s in top["streams"]]
    assert "Triton at localhost:1: not ready after 0 s" in reasons[0]
    assert reasons[1] == f"image folder {empty} has no .jpg/.jpeg/.png files"
    assert top["exit_code"] == 2
    assert f"stream {empty} died" in caplog.text


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([], "the following arguments are required: --source"),
        (["--source", "a.mp4", "--depth", "0"], "depth must be >= 1, got 0"),
        (["--source", "a.mp4", "--timeout-s", "nan"], "timeout_s must be a finite number"),
        (["--source", "a.mp4", "--transport", "cuda_shm"], "invalid choice: 'cuda_shm'"),
    ],
)
def test_nonsensical_options_are_refused_before_anything_runs(tmp_path, argv, problem, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        streams.main([*argv, "--out-dir", str(out)])
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_an_unusable_output_folder_is_exit_2_before_any_stream(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.ERROR):
        assert streams.main(["--source", "a.mp4", "--out-dir", str(blocker)]) == 2
    assert f"cannot use output folder {blocker}" in caplog.text


def test_every_source_gets_a_distinct_folder_name():
    sources = ["a.mp4", "x/a.mp4", "rtsp://cam:554/live/1", "shots/", "http://h/a b?c=1", "..//"]
    assert streams.stream_names(sources) == [
        "a",
        "a-2",
        "cam_554_live_1",
        "shots",
        "h_a_b_c_1",
        "stream",
    ]


def outcome(index: int, latency_s: float = 0.0, error=None, dropped=False) -> FrameOutcome:
    return FrameOutcome(index, None, latency_s, error=error, dropped=dropped)


def test_a_status_line_has_rate_latency_percentiles_drops_and_failures():
    status = StreamStatus("cam")
    for i in range(100):
        status.count(outcome(i, latency_s=(i + 1) / 1000))
    status.count(outcome(100, error="boom"))
    status.count(outcome(101, error="dropped", dropped=True))
    status.state = "streaming"
    line = status.line()
    assert line.startswith("cam: streaming  ")
    assert "latency p50 50 ms p99 99 ms" in line
    assert line.endswith("frames 102  dropped 1  failed 1")
    assert "latency p50 - p99 -" in StreamStatus("idle").line()


def test_the_display_prints_one_line_per_stream_and_refuses_a_flood():
    out = io.StringIO()
    with StatusDisplay([StreamStatus("a"), StreamStatus("b")], out=out):
        pass
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["a", "b"]
    with pytest.raises(ValueError, match="interval_s must be >= 1 second"):
        StatusDisplay([], interval_s=0.1)


def test_supervision_detections_from_a_result():
    sv = pytest.importorskip("supervision", reason="optional: pip install supervision")
    from clients.supervision_adapter import to_detections

    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    result = SegmentationResult(
        image_size=(4, 6),
        boxes=np.array([[2, 1, 5, 3], [0, 0, 1, 1]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        class_ids=np.array([3, 7], np.int32),
        class_names=["car", "dog"],
        rle_counts=[encode_mask(mask), encode_mask(np.zeros((4, 6), bool))],
        polygons=[np.zeros((0, 2), np.int32)] * 2,
    )
    detections = to_detections(result)
    assert isinstance(detections, sv.Detections)
    np.testing.assert_array_equal(detections.xyxy, result.boxes)
    np.testing.assert_array_equal(detections.confidence, result.scores)
    assert detections.class_id.tolist() == [3, 7]
    assert detections.data["class_name"].tolist() == ["car", "dog"]
    assert detections.mask is None, "masks are decoded only on demand"
    with_masks = to_detections(result, masks=True)
    assert with_masks.mask.shape == (2, 4, 6)
    np.testing.assert_array_equal(with_masks.mask[0], mask)
    assert not with_masks.mask[1].any()
    assert len(to_detections(SegmentationResult(image_size=(4, 6)), masks=True)) == 0


def test_the_supervision_adapter_says_how_to_install_it(monkeypatch):
    from clients.supervision_adapter import to_detections

    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match="pip install supervision"):
        to_detections(SegmentationResult(image_size=(4, 6)))
