"""The synthetic sample video: readable, the asked size and length, moving, deterministic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tools.make_sample_video import main, make_sample_video, render_frames


def read_all(path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def test_video_has_the_asked_frames_size_and_rate(tmp_path):
    path = make_sample_video(
        tmp_path / "nested" / "sample.mp4", frames=12, width=160, height=96, fps=10
    )
    frames, fps = read_all(path)
    assert len(frames) == 12
    assert {frame.shape for frame in frames} == {(96, 160, 3)}
    assert fps == pytest.approx(10)
    # Shapes move: consecutive frames differ, and not only by codec noise.
    assert np.abs(frames[0].astype(int) - frames[5].astype(int)).mean() > 5


def test_frames_are_deterministic_and_textured():
    first, second = list(render_frames(3, 64, 48)), list(render_frames(3, 64, 48))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first[0].dtype == np.uint8
    assert len(np.unique(first[0].reshape(-1, 3), axis=0)) > 100


def test_cli_writes_the_video(tmp_path):
    path = tmp_path / "cli.mp4"
    assert main([str(path), "--frames", "4", "--width", "64", "--height", "48"]) == 0
    frames, _ = read_all(path)
    assert len(frames) == 4
    assert frames[0].shape == (48, 64, 3)


@pytest.mark.parametrize("kwargs", [{"frames": 0}, {"width": 4}, {"fps": 0}])
def test_bad_arguments_are_rejected(tmp_path, kwargs):
    with pytest.raises(ValueError, match="need frames >= 1"):
        make_sample_video(tmp_path / "bad.mp4", **kwargs)
