"""Sources beyond files: webcams (opened by index, live, a clear error when there is none) and
PyAV decoding (the optional --decoder pyav: the same frames as OpenCV's, clear errors, a clear
message when PyAV is not installed), and the pacing of live sources (newest-wins)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from clients import stream_video, streams
from clients.sources import Source, VideoSource, open_source, paced_frames
from clients.stream import Unsent
from clients.video import VideoError, check_decoder, open_video, webcam_index
from tools.make_sample_video import make_sample_video

HAVE_AV = importlib.util.find_spec("av") is not None
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV not installed: pip install av")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("video") / "in.mp4", 8, 320, 180, 15)


def decode_all(source: str, decoder: str) -> tuple[list[np.ndarray], float, int]:
    with open_video(source, decoder=decoder) as opened:
        return list(opened.frames()), opened.fps, opened.frame_count


@pytest.mark.parametrize(
    ("spec", "index"),
    [
        ("webcam:0", 0),
        ("webcam:12", 12),
        ("/dev/video2", 2),
        ("webcam:", None),
        ("webcam:x", None),
        ("/dev/video", None),
        ("/dev/video0.mp4", None),
        ("video0.mp4", None),
        ("rtsp://host/webcam:0", None),
    ],
)
def test_webcams_are_named_by_index_or_device_node(spec, index):
    assert webcam_index(spec) == index


@pytest.mark.parametrize("spec", ["webcam:63", "/dev/video63"])
def test_a_webcam_that_cannot_be_opened_is_a_clear_error(spec):
    # No camera 63 on this (or any test) machine: OpenCV's real open fails.
    with pytest.raises(VideoError, match=f"cannot open webcam {spec}: no camera 63 "):
        open_video(spec)


class FakeCamera:
    """Stands in for cv2.VideoCapture on a machine without a camera (unit test only): records
    what it was opened with, reports 30 frames/s, delivers three frames, then nothing."""

    opened_with: list = []

    def __init__(self, *args):
        FakeCamera.opened_with.append(args)
        self._left = 3

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: -1.0}.get(prop, 0.0)

    def read(self):
        if self._left == 0:
            return False, None
        self._left -= 1
        return True, np.full((4, 6, 3), self._left, np.uint8)

    def release(self) -> None:
        pass


def test_a_webcam_opens_by_index_and_is_live(monkeypatch):
    monkeypatch.setattr(FakeCamera, "opened_with", [])
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    with open_source("/dev/video1") as source:
        assert isinstance(source, VideoSource)
        assert (source.live, source.fps, source.frame_count) == (True, 30.0, None)
        assert len(list(source.frames())) == 3
    assert FakeCamera.opened_with == [(1,)], "a camera is opened by its index"
    assert streams.stream_names(["webcam:0", "/dev/video0", "rtsp://a/b"]) == [
        "webcam-0",
        "webcam-0-2",
        "a_b",
    ]


def test_urls_are_live_and_files_are_not(video):
    with open_source(str(video)) as source:
        assert not source.live


class Instant(Source):
    """A live source whose frames are all there at once (a camera far faster than the server)."""

    name, live, fps = "instant", True, 30.0

    def frames(self):
        return (np.full((2, 2, 3), i, np.uint8) for i in range(50))


def test_a_live_source_is_paced_newest_wins_and_every_frame_is_answered():
    stop = threading.Event()
    with paced_frames(Instant(), None, stop, read_timeout_s=1.0) as paced:
        frames = iter(paced)
        taken = [next(frames)]
        time.sleep(0.3)  # the server is busy: the reader gets ahead by everything
        taken += list(frames)
    assert len(taken) == 50, "every frame comes out once, as itself or as dropped"
    dropped = [f for f in taken if isinstance(f, Unsent)]
    assert all(f.dropped for f in dropped) and len(dropped) >= 40
    assert int(taken[-1][0, 0, 0]) == 49, "the newest frame wins"


def test_a_file_is_paced_by_its_reader_and_cut_at_max_frames(video):
    with open_source(str(video)) as source:
        with paced_frames(source, 5, threading.Event(), 1.0) as paced:
            frames = list(paced)
    assert len(frames) == 5 and all(isinstance(f, np.ndarray) for f in frames)


@needs_av
def test_pyav_decodes_the_sample_video_as_opencv_does(video):
    """PyAV and OpenCV both decode with FFmpeg and convert YUV 4:2:0 to BGR with swscale; their
    wheels bundle their own FFmpeg builds, so the rounding of that conversion may differ by a
    level or two. Seen: identical (opencv-python-headless 4.11, PyAV 18.1). Bound: 2 levels."""
    opencv, opencv_fps, opencv_count = decode_all(str(video), "opencv")
    pyav, pyav_fps, pyav_count = decode_all(str(video), "pyav")
    assert (pyav_fps, pyav_count) == (opencv_fps, opencv_count) == (15.0, 8)
    assert len(pyav) == len(opencv) == 8
    for ours, theirs in zip(pyav, opencv, strict=True):
        assert ours.dtype == np.uint8 and ours.shape == (180, 320, 3) == theirs.shape
        assert ours.flags.c_contiguous
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2


@needs_av
@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("garbage", "not a format PyAV can decode"),
        ("webcam:0", "webcams are read by OpenCV"),
        ("rtsp://127.0.0.1:1/stream", "cannot be reached or sent nothing within 1 s"),
    ],
)
def test_pyav_errors_name_the_video_and_the_problem(tmp_path, spec, problem):
    if spec == "garbage":
        spec = str(tmp_path / "garbage.mp4")
        (tmp_path / "garbage.mp4").write_text("not a video")
    with pytest.raises(VideoError, match=problem):
        open_video(spec, timeout_s=1.0, decoder="pyav")


@needs_av
def test_pyav_reports_a_video_that_breaks_off_as_opencv_does(tmp_path, caplog):
    path = make_sample_video(tmp_path / "in.mp4", 10, 160, 96, 10)
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 2000  # frame data from the third frame or so on
    data[start : len(data) - 2000 : 7] = b"\xff" * len(range(start, len(data) - 2000, 7))
    path.write_bytes(bytes(data))
    counts = {}
    for decoder in ("opencv", "pyav"):
        with open_video(str(path), decoder=decoder) as opened:
            counts[decoder] = len(list(opened.frames()))
    assert 0 < counts["pyav"] == counts["opencv"] < 10
    assert "decoding stopped: " in caplog.text
    assert f"video {path} ended after {counts['pyav']} of the 10 frames it reports" in caplog.text


def test_pyav_not_installed_is_a_clear_error_before_anything_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # as if not installed: find_spec says None
    with pytest.raises(ValueError, match=r"decoder pyav needs PyAV, .*: pip install av"):
        check_decoder("pyav")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        stream_video.main(["--video", "in.mp4", "--decoder", "pyav", "--out-dir", str(out)])
    assert exit_info.value.code == 2
    assert "decoder pyav needs PyAV" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
@needs_av
def test_pyav_frames_stream_through_the_server(triton_server, video, tmp_path):
    """Same video, both decoders, the real server: the same detections (the frames are equal
    within the bound above; with the sample they are identical)."""
    results = {}
    for decoder in ("opencv", "pyav"):
        out = tmp_path / decoder
        argv = ["--video", str(video), "--url", triton_server.grpc_url, "--no-video"]
        assert stream_video.main([*argv, "--decoder", decoder, "--out-dir", str(out)]) == 0
        results[decoder] = [
            json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
        ]
    assert len(results["pyav"]) == 8
    assert results["pyav"] == results["opencv"]
