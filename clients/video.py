"""The input video: a file, a stream URL or a webcam, opened with bounded waits and read frame by
frame as BGR uint8 HxWx3, decoded by OpenCV (the default), by PyAV (clients.pyav_video,
optional: `pip install av`) or, for files, by NVDEC on the GPU (clients.nvdec_video, optional:
PyNvVideoCodec and CuPy; its frames are CuPy arrays on the GPU, for the cuda transport)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cv2

from clients.video_capture import Video, VideoError

DECODERS = ("opencv", "pyav", "nvdec")
# webcam:N, or the V4L2 device node /dev/videoN: camera N, opened by index.
_WEBCAM = re.compile(r"(?:webcam:|/dev/video)(\d+)")


def check_decoder(decoder: str) -> None:
    """Refuses a decoder that is unknown or not installed, before anything runs.

    Raises:
        ValueError: the message names the decoder and what to do.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {list(DECODERS)}")
    if decoder == "pyav" and importlib.util.find_spec("av") is None:
        raise ValueError(
            "decoder pyav needs PyAV, which is not installed: pip install av "
            "(or the project's clients extra)"
        )
    if decoder == "nvdec":
        # Imported, not just looked for: an install that cannot load (no CUDA library) is found
        # here, before anything runs.
        from clients.nvdec_video import nvdec_modules

        nvdec_modules()


def webcam_index(source: str) -> int | None:
    """The camera index `source` names (webcam:N or /dev/videoN), None for anything else."""
    match = _WEBCAM.fullmatch(source)
    return int(match.group(1)) if match else None


def open_video(source: str, timeout_s: float = 10.0, decoder: str = "opencv") -> Video:
    """Opens a video file, a stream URL (anything with "://") or a webcam (webcam:N or
    /dev/videoN; always through OpenCV, by index).

    Args:
        source: the file, URL or camera.
        timeout_s: how long opening a stream, and then reading each frame, may wait (without
            it OpenCV waits 30 s on a silent server).
        decoder: "opencv" or "pyav" (files and URLs), or "nvdec" (files; frames on the GPU).

    Raises:
        VideoError: no such file; not a video the decoder decodes; a stream that cannot be
            reached or says nothing within timeout_s; a webcam that cannot be opened; no frame
            rate; PyAV or NVDEC asked for a webcam, NVDEC for a stream URL.
        ValueError: as check_decoder.
    """
    check_decoder(decoder)
    camera = webcam_index(source)
    if camera is not None:
        if decoder != "opencv":
            raise VideoError(
                f"cannot open webcam {source} with {decoder}: webcams are read by OpenCV"
            )
        return _open_webcam(source, camera)
    path = Path(source)
    if "://" not in source and not path.is_file():
        raise VideoError(
            f"cannot open video {source}: {'not a file' if path.exists() else 'no such file'}"
        )
    if decoder == "pyav":
        from clients.pyav_video import open_pyav  # optional dependency, imported on demand

        return _checked(open_pyav(source, timeout_s))
    if decoder == "nvdec":
        from clients.nvdec_video import open_nvdec  # optional dependency, imported on demand

        return _checked(open_nvdec(source))
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
    return _checked(
        Video(
            source,
            capture,
            capture.get(cv2.CAP_PROP_FPS),
            max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
            live="://" in source,
        )
    )


def _open_webcam(source: str, index: int) -> Video:
    """Camera `index` through cv2.VideoCapture(index): live, no frame count."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise VideoError(
            f"cannot open webcam {source}: no camera {index} (/dev/video{index}), or it is busy "
            "or not readable by this user"
        )
    return _checked(Video(source, capture, capture.get(cv2.CAP_PROP_FPS), 0, live=True))


def _checked(video: Video) -> Video:
    if not video.fps > 0:  # also NaN
        video.close()
        raise VideoError(f"video {video.source} reports no frame rate")
    return video
