"""An open input video and what it reads from: the one type clients.video's opener and its
optional decoders (clients.pyav_video, clients.nvdec_video) all return, kept apart from the opener
so those decoders do not import the module that imports them."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)


class VideoError(RuntimeError):
    """The input video cannot be read; the message names it and the problem."""


class Capture(Protocol):
    """What Video reads from: cv2.VideoCapture's read() and release(), which PyAV's and NVDEC's
    readers (clients.pyav_video, clients.nvdec_video: a CuPy array on the GPU) also have."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


@dataclass
class Video:
    """An open video; a context manager that releases it."""

    source: str
    capture: Capture = field(repr=False)
    fps: float
    frame_count: int  # as the container reports it; 0 when unknown (a live stream)
    live: bool = False  # a stream URL or a webcam: frames come at its pace, lost if not read

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
