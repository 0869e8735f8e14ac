"""Video decoding with PyAV (FFmpeg's libraries through their Python bindings), the optional
alternative to OpenCV: `--decoder pyav`. Needs `pip install av` (the project's clients extra);
clients.video imports this module only when PyAV is chosen.

PyAV decodes on threads of its own (thread_type AUTO) and converts to BGR with FFmpeg's swscale,
as OpenCV's FFmpeg backend does: on the sample video the frames are identical to OpenCV's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import numpy as np

from clients.video_capture import Video, VideoError

logger = logging.getLogger(__name__)


class PyAVCapture:
    """The first video stream of a container, read like a cv2.VideoCapture: read() gives
    (True, BGR uint8 HxWx3) per frame, then (False, None) at the end or at the first error a
    damaged file raises (logged; clients.video.Video reports a short file)."""

    def __init__(self, container: av.container.InputContainer, source: str):
        self._container = container
        self._source = source
        self._frames: Iterator[av.VideoFrame] = container.decode(video=0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            frame = next(self._frames, None)
        except av.FFmpegError as error:
            logger.warning("video %s: decoding stopped: %s", self._source, error)
            frame = None
        if frame is None:
            return False, None
        return True, frame.to_ndarray(format="bgr24")

    def release(self) -> None:
        self._container.close()


def open_pyav(source: str, timeout_s: float) -> Video:
    """Opens a video file or stream URL with PyAV.

    Raises:
        VideoError: not a container FFmpeg reads, no video stream in it, or a stream that cannot
            be reached or says nothing within timeout_s (opening, then each read).
    """
    try:
        container = av.open(source, timeout=(timeout_s, timeout_s))
    except (av.FFmpegError, OSError) as error:
        raise VideoError(
            f"cannot open video {source}: not a format PyAV can decode, or a stream that cannot "
            f"be reached or sent nothing within {timeout_s:g} s ({error})"
        ) from error
    if not container.streams.video:
        container.close()
        raise VideoError(f"cannot open video {source}: it holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame and slice threads: several frames decode at once
    rate = stream.average_rate or stream.guessed_rate
    return Video(
        source,
        PyAVCapture(container, source),
        float(rate) if rate else 0.0,
        stream.frames or 0,
        live="://" in source,
    )
