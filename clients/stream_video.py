"""Streams a video through the RF-DETR-Seg ensemble on Triton and writes what came back.

    python -m clients.stream_video --video in.mp4 --url localhost:8001 --transport system_shm \\
        --depth 2 --out-dir outputs/ [--max-frames N] [--no-video]

Writes <out-dir>/results.jsonl (one line per frame; a failed frame is a line with "error"),
<out-dir>/annotated.mp4 (masks, outlines, boxes, labels; same fps as the input) and
<out-dir>/summary.json (frames, failed, seconds, end-to-end fps, per-stage server statistics).
Exits non-zero when any frame failed. From Python: stream_video(video, url, ...), same outputs,
the exit code returned.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpcclient
from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from backends import contract
from clients.annotate import annotate
from clients.results import error_record, to_json_record
from clients.server_stats import StageStats, format_table, read_counters, stats_since
from clients.stream import FrameOutcome, stream_frames
from clients.transports import TRANSPORT_KINDS, make_transport

logger = logging.getLogger("stream_video")


class VideoError(RuntimeError):
    """The input video cannot be read; the message names the file and the problem."""


def open_video(path: str) -> tuple[cv2.VideoCapture, float, int]:
    """(capture, fps, frame count as the container reports it; 0 when unknown)."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoError(f"cannot open video {path}: missing or not a format OpenCV can decode")
    return capture, capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))


def read_frames(capture: cv2.VideoCapture, max_frames: int | None) -> Iterator[np.ndarray]:
    """The capture's frames, at most max_frames of them."""
    for _ in itertools.count() if max_frames is None else range(max_frames):
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


class Outputs:
    """results.jsonl and annotated.mp4, written frame by frame. A context manager."""

    def __init__(self, out_dir: Path, fps: float, write_video: bool):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.video_path = out_dir / "annotated.mp4" if write_video else None
        self._jsonl = (out_dir / "results.jsonl").open("w")
        self._writer: cv2.VideoWriter | None = None

    def write(self, outcome: FrameOutcome) -> None:
        timestamp_s = outcome.index / self.fps
        if outcome.ok:
            record = to_json_record(outcome.index, outcome.result, timestamp_s)
        else:
            record = error_record(outcome.index, outcome.error, timestamp_s)
        self._jsonl.write(json.dumps(record) + "\n")
        if self.video_path is not None:
            # A failed frame goes in undrawn: the video keeps the input's frame count and timing.
            drawn = annotate(outcome.frame, outcome.result) if outcome.ok else outcome.frame
            self._video_writer(outcome.frame).write(drawn)

    def _video_writer(self, frame: np.ndarray) -> cv2.VideoWriter:
        if self._writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.video_path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.video_path} (mp4v)")
        return self._writer

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._jsonl.close()
        if self._writer is not None:
            self._writer.release()


@dataclass
class RunSummary:
    """What one run did: the numbers summary.json holds and the CLI prints."""

    video: str
    transport: str
    depth: int
    frames: int
    failed: int
    seconds: float
    fps: float  # end to end: decode, inference, drawing and writing
    stages: list[StageStats]

    def report(self) -> str:
        return (
            f"frames: {self.frames}  failed: {self.failed}  wall: {self.seconds:.2f} s  "
            f"end-to-end: {self.fps:.2f} frames/s\n{format_table(self.stages)}"
        )


@dataclass(frozen=True)
class StreamOptions:
    """What one run streams, to where, how: stream_video's arguments, checked.

    Raises:
        ValueError: depth or max_frames below 1, or an unknown transport.
    """

    video: str  # a file or a stream URL OpenCV opens
    url: str  # Triton's gRPC endpoint
    transport: str
    depth: int
    out_dir: Path
    max_frames: int | None
    write_video: bool

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORT_KINDS:
            raise ValueError(
                f"unknown transport {self.transport!r}; choose one of {list(TRANSPORT_KINDS)}"
            )
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # A string, not a Path: Path would fold the "//" of an rtsp:// URL, which OpenCV also opens.
    parser.add_argument("--video", required=True, help="input video file or stream URL")
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC endpoint")
    parser.add_argument(
        "--transport", choices=TRANSPORT_KINDS, default="grpc", help="how frames travel"
    )
    parser.add_argument("--depth", type=int, default=2, help="requests in flight")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames must be >= 1, got {args.max_frames}")
    return args


def stream_to_outputs(
    client: grpcclient.InferenceServerClient,
    frames: Iterator[np.ndarray],
    options: StreamOptions,
    fps: float,
    total: int | None,
) -> tuple[int, int]:
    """Streams the frames and writes every outcome; returns (frames, failed frames)."""
    processed = failed = 0
    with (
        Outputs(options.out_dir, fps, options.write_video) as outputs,
        make_transport(options.transport, client, options.depth) as transport,
    ):
        for outcome in tqdm(
            stream_frames(client, frames, transport, options.depth), total=total, unit="frame"
        ):
            if not outcome.ok:
                failed += 1
                logger.error("frame %d failed: %s", outcome.index, outcome.error)
            outputs.write(outcome)
            processed += 1
    return processed, failed


def run(options: StreamOptions) -> RunSummary:
    """Streams the video through the server at options.url and writes the outputs.

    Raises:
        VideoError: the video cannot be opened, reports no frame rate or has no frames.
        InferenceServerException: the server is unreachable or the ensemble is not ready.
        TimeoutError: the client got stuck waiting for responses.
    """
    capture, fps, frame_count = open_video(options.video)
    try:
        if fps <= 0:
            raise VideoError(f"video {options.video} reports no frame rate")
        frames = read_frames(capture, options.max_frames)
        first = next(frames, None)
        if first is None:
            raise VideoError(f"video {options.video} has no frames")
        known = [n for n in (frame_count, options.max_frames) if n]
        with grpcclient.InferenceServerClient(options.url) as client:
            if not client.is_model_ready(contract.ENSEMBLE):
                raise InferenceServerException(f"model {contract.ENSEMBLE} is not ready")
            before = read_counters(client)
            start = time.perf_counter()
            total = min(known) if known else None
            processed, failed = stream_to_outputs(
                client, itertools.chain([first], frames), options, fps, total
            )
            seconds = time.perf_counter() - start
            stages = stats_since(client, before, served=processed - failed)
    finally:
        capture.release()
    return RunSummary(
        video=options.video,
        transport=options.transport,
        depth=options.depth,
        frames=processed,
        failed=failed,
        seconds=seconds,
        fps=processed / seconds,
        stages=stages,
    )


def stream_video(
    video: str | Path,
    url: str,
    transport: str = "system_shm",
    depth: int = 2,
    out_dir: Path = Path("outputs"),
    max_frames: int | None = None,
    write_video: bool = True,
) -> int:
    """Streams a video through the ensemble at `url` and writes results.jsonl, annotated.mp4
    (unless write_video is False) and summary.json under out_dir; prints the summary.

    What the CLI (main) does, callable without building an argv. Errors that stop the run are
    logged, not raised.

    Args:
        video: a video file, or a stream URL OpenCV opens (give URLs as str: a Path would fold
            their "//").
        url: Triton's gRPC endpoint, HOST:PORT.
        transport: one of clients.transports.TRANSPORT_KINDS. system_shm needs the server on
            this host (or sharing its IPC namespace).
        depth: requests in flight.
        out_dir: where the outputs go; created if missing.
        max_frames: stop after this many frames; None: the whole video.
        write_video: write annotated.mp4.

    Returns:
        The exit code: 0 every frame was served, 1 some frames failed (recorded in
        results.jsonl), 2 the run could not go on (unreadable video, server unreachable or not
        ready, client stuck); with 2, summary.json is not written.

    Raises:
        ValueError: depth or max_frames below 1, or an unknown transport.
    """
    options = StreamOptions(
        str(video), url, transport, depth, Path(out_dir), max_frames, write_video
    )
    try:
        summary = run(options)
    except (VideoError, TimeoutError) as error:
        logger.error("%s", error)
        return 2
    except InferenceServerException as error:
        logger.error("Triton at %s: %s", options.url, error)
        return 2
    (options.out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    print(summary.report())
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return stream_video(
        args.video,
        args.url,
        transport=args.transport,
        depth=args.depth,
        out_dir=args.out_dir,
        max_frames=args.max_frames,
        write_video=not args.no_video,
    )


if __name__ == "__main__":
    raise SystemExit(main())
