"""The input video: a file or a stream URL, opened with OpenCV with bounded waits, read frame by
frame."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)


class VideoError(RuntimeError):
    """The input video cannot be read; the message names it and the problem."""


@dataclass
class Video:
    """An open video; a context manager that releases it."""

    source: str
    capture: cv2.VideoCapture = field(repr=False)
    fps: float
    frame_count: int  # as the container reports it; 0 when unknown (a live stream)

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """The frames in order, at most max_frames.

        A file that ends before the frame count its container reports is corrupt or truncated:
        that is logged, and the frames read so far stand. (Not an error: containers without a
        frame index only estimate the count.)
        """
        for read in itertools.count() if max_frames is None else range(max_frames):
            ok, frame = self.capture.read()
            if not ok:
                if read < self.frame_count:
                    logger.warning(
                        "video %s ended after %d of the %d frames it reports: corrupt or truncated",
                        self.source,
                        read,
                        self.frame_count,
                    )
                return
            yield frame

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_video(source: str, timeout_s: float = 10.0) -> Video:
    """Opens a video file, or a stream URL (anything with "://") OpenCV's FFmpeg backend reads.

    Args:
        source: the file or URL.
        timeout_s: how long opening a stream, and then reading each frame, may wait (without
            it OpenCV waits 30 s on a silent server).

    Raises:
        VideoError: no such file; not a video OpenCV decodes; a stream that cannot be reached
            or says nothing within timeout_s; no frame rate.
    """
    path = Path(source)
    if "://" not in source and not path.is_file():
        raise VideoError(
            f"cannot open video {source}: {'not a file' if path.exists() else 'no such file'}"
        )
    wait_ms = round(timeout_s * 1000)
    capture = cv2.VideoCapture(
        source,
        cv2.CAP_ANY,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, wait_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, wait_ms],
    )
    if not capture.isOpened():
        raise VideoError(
            f"cannot open video {source}: not a format OpenCV can decode, or a stream that "
            f"cannot be reached or sent nothing within {timeout_s:g} s"
        )
    video = Video(
        source,
        capture,
        capture.get(cv2.CAP_PROP_FPS),
        max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
    )
    if video.fps <= 0:
        video.close()
        raise VideoError(f"video {source} reports no frame rate")
    return video
