"""Streams one video through the RF-DETR-Seg ensemble on Triton and writes what came back.

    python -m clients stream --video in.mp4 --url localhost:8001 --transport system_shm \\
        --depth 2 --out-dir outputs/ [--max-frames N] [--no-video] [--timeout-s S] \\
        [--reconnect-timeout-s S] [--video-timeout-s S] [--decoder opencv|pyav|nvdec] \\
        [--no-polygons]

(`python -m clients.stream_video ...` is the same command.) The video is a file, a stream URL
(rtsp://, http://...) or a webcam (webcam:N or /dev/videoN; --source is another name for
--video). Stream URLs and webcams are live: when the server falls behind, newest wins (a frame
waiting for a slot is dropped for a newer one, a {"dropped": true} line in results.jsonl);
files wait for the server instead.

Writes <out-dir>/results.jsonl (one line per frame; a failed frame is a line with "error"),
<out-dir>/annotated.mp4 (masks, outlines, boxes, labels; same fps as the input) and
<out-dir>/summary.json (frames, failed, seconds, end-to-end fps, per-stage server statistics or
why they are missing, server outages, exit code, why the run stopped early). An earlier run's
files are removed first; summary.json is written whenever the output folder is usable, also
when the run cannot start or stops early. A server that goes away mid-run is waited for (up to
--reconnect-timeout-s) and the stream goes on; the frames it failed meanwhile are recorded.

Exit codes (summary.json's "exit_code"; "stopped_because" says why a run ended early):
  0    every frame was served
  1    the run went through, but some frames failed or were dropped (each is a line of
       results.jsonl)
  2    could not run, or stopped early: bad option (no summary.json), output folder not
       writable (no summary.json), video missing or unreadable, server unreachable or not
       ready past --reconnect-timeout-s, client stuck
  130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM: no further frame is sent, the frames in
       flight are awaited (each up to --timeout-s), shared memory is released

From Python: stream_video(video, url, ...), same outputs, the exit code returned.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from clients import command, runner
from clients.outputs import SUMMARY, OutputError, Outputs, RunSummary, prepare_out_dir
from clients.runner import (
    EXIT_COULD_NOT_RUN,
    RECONNECT_TIMEOUT_S,
    TIMEOUT_S,
    VIDEO_TIMEOUT_S,
    add_stream_arguments,
    StreamSettings,
    settings_from_args,
    exit_code_of,
)
from clients.signals import StopOnSignals
from clients.sources import VideoSource, paced_frames
from clients.video import VideoError, open_video

logger = logging.getLogger("stream_video")


@dataclass(frozen=True)
class StreamOptions(StreamSettings):
    """What one run streams, to where, how: stream_video's arguments, checked.

    Raises:
        ValueError: as clients.runner.StreamSettings, or decoder nvdec with write_video.
    """

    video: str  # a file, a stream URL or a webcam (clients.video.open_video)
    write_video: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder == "nvdec" and self.write_video:
            raise ValueError(
                "decoder nvdec keeps the frames on the GPU, and annotated.mp4 is drawn on the "
                "host: add --no-video (results.jsonl has the detections), or decode with opencv "
                "or pyav"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # A string, not a Path: Path would fold the "//" of an rtsp:// URL.
    parser.add_argument(
        "--video",
        "--source",
        dest="video",
        required=True,
        help="input video file, stream URL, or webcam (webcam:N or /dev/videoN)",
    )
    add_stream_arguments(parser)
    parser.add_argument("--no-video", action="store_true", help="skip annotated.mp4")


def options_from_args(args: argparse.Namespace) -> StreamOptions:
    return StreamOptions(
        **settings_from_args(args), video=args.video, write_video=not args.no_video
    )


def parse_args(argv: Sequence[str] | None) -> StreamOptions:
    """The checked options of a command line (without the subcommand's name)."""
    return command.parse(COMMAND.parser(), argv)[1]


def stream(options: StreamOptions, summary: RunSummary, stop: threading.Event) -> None:
    """Streams the video through the server at options.url and writes the outputs, keeping
    `summary` up to date. Returns early when `stop` is set.

    Raises:
        VideoError: the video cannot be opened, reports no frame rate or has no frames.
        As clients.runner.serve otherwise.
    """
    opened = open_video(options.video, options.video_timeout_s, options.decoder)
    with (
        VideoSource(opened) as video,
        paced_frames(video, options.max_frames, stop, options.video_timeout_s) as paced,
    ):
        frames = iter(paced)
        first = next(frames, None)
        if first is None:
            if stop.is_set():  # asked to stop while a live source had sent nothing yet
                return
            raise VideoError(f"video {options.video} has no frames")
        known = [n for n in (video.frame_count, options.max_frames) if n]
        runner.serve(
            options.url,
            itertools.chain([first], frames),
            options.transport,
            options.depth,
            options.timeout_s,
            options.reconnect_timeout_s,
            lambda: Outputs(options.out_dir, video.fps, options.write_video),
            summary,
            stop,
            lambda outcomes: tqdm(outcomes, total=min(known) if known else None, unit="frame"),
            polygons=options.polygons,
        )


def run(options: StreamOptions, stop: threading.Event) -> RunSummary:
    """stream(), with whatever stops it early recorded in the summary rather than raised."""
    summary = RunSummary(options.video, options.transport, options.depth)
    runner.run_recorded(summary, options.url, lambda: stream(options, summary, stop))
    return summary


def execute(options: StreamOptions) -> int:
    """What stream_video and the CLI do once the options are checked; returns the exit code."""
    try:
        prepare_out_dir(options.out_dir)
    except OutputError as error:
        logger.error("%s", error)
        return EXIT_COULD_NOT_RUN
    with StopOnSignals() as signals:
        summary = run(options, signals.event)
        if signals.received is not None:
            summary.exit_code = signals.exit_code
            summary.stopped_because = summary.stopped_because or f"{signals.received.name} received"
        else:
            summary.exit_code = exit_code_of(summary)
            if summary.stopped_because is not None:
                logger.error("%s", summary.stopped_because)
        try:
            summary.write(options.out_dir)
        except OSError as error:
            logger.error("cannot write the summary: %s", error)
            return EXIT_COULD_NOT_RUN
        print(summary.report())
        if signals.received is not None:
            logger.warning(
                "stopped by %s after %d frames; summary in %s",
                signals.received.name,
                summary.frames,
                options.out_dir / SUMMARY,
            )
    return summary.exit_code


def stream_video(
    video: str | Path,
    url: str,
    transport: str = "system_shm",
    depth: int = 2,
    out_dir: Path = Path("outputs"),
    max_frames: int | None = None,
    write_video: bool = True,
    timeout_s: float = TIMEOUT_S,
    reconnect_timeout_s: float = RECONNECT_TIMEOUT_S,
    video_timeout_s: float = VIDEO_TIMEOUT_S,
    decoder: str = "opencv",
    polygons: bool | None = None,
) -> int:
    """Streams a video through the ensemble at `url` and writes results.jsonl, annotated.mp4
    (unless write_video is False) and summary.json under out_dir; prints the summary.

    What the CLI (main) does, callable without building an argv. Errors that stop the run are
    logged and recorded in summary.json, not raised. SIGINT and SIGTERM stop the run cleanly
    when this runs in the main thread.

    Args:
        video: a video file, a stream URL (give URLs as str: a Path would fold their "//"), or
            a webcam (webcam:N or /dev/videoN).
        url: Triton's gRPC endpoint, HOST:PORT.
        transport: one of clients.transports.TRANSPORT_KINDS. system_shm needs the server on
            this host (or sharing its IPC namespace), cuda on this host and GPU.
        depth: requests in flight.
        out_dir: where the outputs go; created if missing, an earlier run's outputs removed.
        max_frames: stop after this many frames; None: the whole video.
        write_video: write annotated.mp4.
        timeout_s: per-request deadline; a request past it is a failed frame.
        reconnect_timeout_s: how long to wait for the server when it is unreachable or not
            ready, at the start and after it went away (0: check once).
        video_timeout_s: how long a stream URL may take to open, then to deliver each frame.
        decoder: "opencv", "pyav" or "nvdec" (clients.video.DECODERS; nvdec needs transport
            cuda and write_video False).
        polygons: False asks the server to skip polygons (every one empty), True to trace
            them; None leaves it to the deployment.

    Returns:
        The exit code, as the module's documentation lists them (0, 1, 2, 130, 143).

    Raises:
        ValueError: as clients.runner.StreamSettings.
    """
    return execute(
        StreamOptions(
            url=url,
            transport=transport,
            depth=depth,
            out_dir=Path(out_dir),
            max_frames=max_frames,
            timeout_s=timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            video_timeout_s=video_timeout_s,
            decoder=decoder,
            video=str(video),
            write_video=write_video,
            polygons=polygons,
        )
    )


COMMAND = command.Command(
    name="stream",
    summary="one video, stream URL or webcam: results, annotated video and summary",
    doc=__doc__,
    add_arguments=add_arguments,
    options=options_from_args,
    execute=execute,
)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m clients.stream_video`: the same as `python -m clients stream`."""
    return command.run(COMMAND.parser("python -m clients.stream_video"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
