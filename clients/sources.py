"""Where a stream's frames come from: a video file, a stream URL or a webcam (both live), or a
folder of images, each behind the same small interface.

Live sources keep producing frames whether or not they are read, so a stream over one drops
frames when the server falls behind (clients.drop_policy, through paced_frames); files and
folders wait instead.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import cv2
import numpy as np

from clients.drop_policy import newest_wins
from clients.stream import Unsent
from clients.video import Video, VideoError, open_video

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class Source:
    """Frames from one place, in order. A context manager that releases them.

    Attributes:
        name: what the user gave (a path or URL), for messages and summaries.
        live: frames come at the source's pace and are lost if not read in time.
        fps: frames per second, for timestamps; None when the source has none (images).
        frame_count: frames expected; None when unknown (a live stream).
    """

    name: str
    live: bool = False
    fps: float | None = None
    frame_count: int | None = None

    def frames(self) -> Iterator[np.ndarray | Unsent]:
        """The frames, or Unsent in place of one that could not be read."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the source holds; safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoSource(Source):
    """A video file, a stream URL or a webcam (both live), as clients.video opened it."""

    def __init__(self, video: Video):
        self.name = video.source
        self.live = video.live
        self.fps = video.fps
        self.frame_count = video.frame_count or None
        self._video = video

    def frames(self) -> Iterator[np.ndarray]:
        return self._video.frames()

    def close(self) -> None:
        self._video.close()


class ImageFolder(Source):
    """The folder's .jpg and .png files, sorted by name; one that cannot be decoded is an
    Unsent frame (it fails alone, the rest go on).

    Raises:
        VideoError: the folder holds no such file.
    """

    def __init__(self, folder: Path):
        self.name = str(folder)
        self.paths = sorted(
            path
            for path in folder.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise VideoError(f"image folder {folder} has no {'/'.join(IMAGE_SUFFIXES)} files")
        self.frame_count = len(self.paths)

    def frames(self) -> Iterator[np.ndarray | Unsent]:
        for path in self.paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            yield Unsent(f"cannot read image {path}") if image is None else image


def open_source(spec: str, timeout_s: float = 10.0, decoder: str = "opencv") -> Source:
    """The source `spec` names: a folder of images, else a video file, stream URL or webcam.

    Args:
        spec: a folder, a video file, a URL (rtsp://, http://...), webcam:N or /dev/videoN.
        timeout_s: how long a stream URL may take to open, then to deliver each frame.
        decoder: how videos are decoded, one of clients.video.DECODERS.

    Raises:
        VideoError: it cannot be opened or holds nothing to stream; the message says why.
    """
    if "://" not in spec and Path(spec).is_dir():
        try:
            return ImageFolder(Path(spec))
        except OSError as error:
            raise VideoError(f"cannot read image folder {spec}: {error.strerror}") from error
    return VideoSource(open_video(spec, timeout_s, decoder))


def paced_frames(
    source: Source, max_frames: int | None, stop: threading.Event, read_timeout_s: float
) -> AbstractContextManager[Iterable[np.ndarray | Unsent]]:
    """The source's frames as a stream takes them, at most max_frames: newest-wins if the
    source is live (closing the context stops its reader thread), as they come otherwise.

    Args:
        read_timeout_s: the longest one read of the source may take; closing waits that long
            (plus a second) for a read under way before the source may be released.
    """
    frames: Iterable[np.ndarray | Unsent] = itertools.islice(source.frames(), max_frames)
    if source.live:
        return contextlib.closing(newest_wins(frames, stop, read_timeout_s + 1.0))
    return contextlib.nullcontext(frames)
