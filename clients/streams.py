"""Streams many sources at once through the RF-DETR-Seg ensemble on Triton, each its own stream.

    python -m clients streams --url HOST:8001 --transport grpc|system_shm|cuda \\
        --source a.mp4 --source rtsp://cam/1 --source webcam:0 --source folder_of_images/ \\
        [--depth 2] [--out-dir outputs/] [--max-frames N] [--timeout-s S] \\
        [--reconnect-timeout-s S] [--video-timeout-s S] [--decoder opencv|pyav|nvdec] \\
        [--no-polygons]

(`python -m clients.streams ...` is the same command.) Sources: video files and stream URLs
(decoded by OpenCV, or PyAV with --decoder pyav; files on the GPU by NVDEC with --decoder nvdec and
--transport cuda), webcams (webcam:N or /dev/videoN, through OpenCV), folders of .jpg/.png images
(sorted by name; an image that cannot be read is a failed frame). Every source runs on its own
thread with its own gRPC client and transport ring, results in frame order, and writes
<out-dir>/<stream>/results.jsonl and <out-dir>/<stream>/summary.json (as clients.stream_video,
without annotated.mp4); <stream> is the file, folder, URL or camera's name. A stream that dies
(cannot be opened, server gone past the deadline) says why in its summary; the others go on.

Live sources (URLs, webcams) never queue up: when the server falls behind, newest wins (the
frame waiting for a slot is dropped for a newer one) and each dropped frame is a line
{"dropped": true} of results.jsonl and counted in "dropped"; files and folders wait for the
server instead.

One status line per stream (frames/s, latency p50/p99, dropped, failed) goes to stderr every
second. <out-dir>/summary.json sums the streams up (frames, failed, dropped, fps of each).

Exit codes (also the top summary's "exit_code"):
  0    every frame of every stream was served
  1    some frames failed or were dropped, or a stream died (the others went on)
  2    could not run at all: a bad option or an unusable output folder (no summary.json), or
       no stream could stream
  130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM: every stream stops sending, waits for its
       frames in flight, releases its shared memory and writes its summary (which says so:
       "SIGINT received", exit code 130)

From Python: run_streams(sources, url, ...), the exit code returned; a source may also be a
clients.sources.Source object (live or not).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clients import command, runner
from clients.outputs import SUMMARY, OutputError, Outputs, RunSummary, prepare_out_dir
from clients.runner import (
    EXIT_COULD_NOT_RUN,
    EXIT_FRAMES_FAILED,
    EXIT_OK,
    RECONNECT_TIMEOUT_S,
    TIMEOUT_S,
    VIDEO_TIMEOUT_S,
    add_stream_arguments,
    StreamSettings,
    settings_from_args,
    exit_code_of,
)
from clients.signals import StopOnSignals
from clients.sources import Source, open_source, paced_frames
from clients.status import StatusDisplay, StreamStatus
from clients.stream import FrameOutcome
from clients.video import VideoError, webcam_index

logger = logging.getLogger("streams")


@dataclass(frozen=True)
class StreamsOptions(StreamSettings):
    """What a run of many streams streams, to where, how: run_streams' arguments, checked.

    Raises:
        ValueError: no source, or as clients.runner.StreamSettings.
    """

    sources: tuple[str | Source, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sources:
            raise ValueError("give at least one source")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        help="a video file, a stream URL, a webcam (webcam:N or /dev/videoN) or a folder of "
        "images; repeat for more streams",
    )
    add_stream_arguments(parser)


def options_from_args(args: argparse.Namespace) -> StreamsOptions:
    return StreamsOptions(**settings_from_args(args), sources=tuple(args.source))


def parse_args(argv: Sequence[str] | None) -> StreamsOptions:
    """The checked options of a command line (without the subcommand's name)."""
    return command.parse(COMMAND.parser(), argv)[1]


def stream_names(sources: Sequence[str | Source]) -> list[str]:
    """A distinct folder name per source: the file or folder's name without suffix, the URL's
    host and path, webcam-N for a camera; characters a file name should not hold become "_",
    repeats get -2, -3..."""
    names: list[str] = []
    for source in sources:
        spec = source if isinstance(source, str) else source.name
        camera = webcam_index(spec)
        if camera is not None:
            base = f"webcam-{camera}"
        elif "://" in spec:
            base = spec.split("://", 1)[1]
        else:
            base = Path(spec.rstrip("/")).stem or "stream"
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_.") or "stream"
        name = base
        for n in itertools.count(2):
            if name not in names:
                break
            name = f"{base}-{n}"
        names.append(name)
    return names


def stream_one(
    source: str | Source,
    out_dir: Path,
    options: StreamsOptions,
    stop: threading.Event,
    status: StreamStatus,
    signals: StopOnSignals | None = None,
) -> RunSummary:
    """One stream, start to end, on the calling thread; what stops it is in its summary, which
    is also written to out_dir (prepare_out_dir'd).

    Args:
        signals: what sets `stop` on SIGINT/SIGTERM, if anything: a stream that a signal ends
            says so in its summary (stopped_because, exit code 130/143), as the single-stream
            CLI does, instead of passing for one that served its whole source.
    """
    spec = source if isinstance(source, str) else source.name
    summary = RunSummary(spec, options.transport, options.depth)

    def watch(outcomes: Iterable[FrameOutcome]) -> Iterable[FrameOutcome]:
        status.state = "streaming"
        for outcome in outcomes:
            status.count(outcome)
            yield outcome

    def work() -> None:
        opened = (
            open_source(source, options.video_timeout_s, options.decoder)
            if isinstance(source, str)
            else source
        )
        paced = paced_frames(opened, options.max_frames, stop, options.video_timeout_s)
        with opened, paced as frames:
            runner.serve(
                options.url,
                frames,
                options.transport,
                options.depth,
                options.timeout_s,
                options.reconnect_timeout_s,
                lambda: Outputs(out_dir, opened.fps, write_video=False),
                summary,
                stop,
                watch,
                read_stats=False,
                polygons=options.polygons,
            )
        if summary.frames == 0 and not stop.is_set():
            raise VideoError(f"{spec} has no frames")

    runner.run_recorded(summary, options.url, work)
    if summary.stopped_because is None and signals is not None and signals.received is not None:
        summary.stopped_because = f"{signals.received.name} received"
        summary.exit_code = signals.exit_code
        status.state = "stopped"
    elif summary.stopped_because is not None:
        summary.exit_code = exit_code_of(summary)
        status.state = "died"
        logger.error("stream %s died: %s", spec, summary.stopped_because)
    else:
        summary.exit_code = exit_code_of(summary)
        status.state = "done"
    try:
        summary.write(out_dir)
    except OSError as error:
        logger.error("cannot write the summary of %s: %s", spec, error)
    return summary


def top_summary(
    names: list[str], summaries: list[RunSummary], seconds: float, exit_code: int
) -> dict:
    """The run's summary.json: every stream's counts and the totals."""
    frames = sum(s.frames for s in summaries)
    return {
        "streams": [
            {
                "name": name,
                "source": s.video,
                "frames": s.frames,
                "failed": s.failed,
                "dropped": s.dropped,
                "fps": s.fps,
                "exit_code": s.exit_code,
                "stopped_because": s.stopped_because,
            }
            for name, s in zip(names, summaries, strict=True)
        ],
        "frames": frames,
        "failed": sum(s.failed for s in summaries),
        "dropped": sum(s.dropped for s in summaries),
        "seconds": seconds,
        "fps": frames / seconds if seconds > 0 else 0.0,  # all streams together
        "exit_code": exit_code,
    }


def run_exit_code(summaries: list[RunSummary]) -> int:
    """2: no stream streamed a frame; 1: a stream died or lost frames; 0: all served."""
    if all(s.stopped_because is not None and s.frames == 0 for s in summaries):
        return EXIT_COULD_NOT_RUN
    return EXIT_OK if all(s.exit_code == EXIT_OK for s in summaries) else EXIT_FRAMES_FAILED


def execute(options: StreamsOptions, status_interval_s: float = 1.0) -> int:
    """What run_streams and the CLI do once the options are checked; returns the exit code."""
    names = stream_names(options.sources)
    out_dirs = [options.out_dir / name for name in names]
    try:
        for out_dir in (options.out_dir, *out_dirs):
            prepare_out_dir(out_dir)
    except OutputError as error:
        logger.error("%s", error)
        return EXIT_COULD_NOT_RUN
    statuses = [StreamStatus(name) for name in names]
    summaries: list[RunSummary | None] = [None] * len(names)

    def one(i: int) -> None:
        summaries[i] = stream_one(
            options.sources[i], out_dirs[i], options, signals.event, statuses[i], signals
        )

    start = time.perf_counter()
    with StopOnSignals() as signals, StatusDisplay(statuses, status_interval_s):
        threads = [
            threading.Thread(target=one, args=(i,), name=name) for i, name in enumerate(names)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            # Short joins: the main thread must come back to Python to run the signal handlers.
            while thread.is_alive():
                thread.join(0.2)
    exit_code = signals.exit_code or run_exit_code(summaries)
    summary = top_summary(names, summaries, time.perf_counter() - start, exit_code)
    try:
        (options.out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as error:
        logger.error("cannot write the summary: %s", error)
        return EXIT_COULD_NOT_RUN
    for entry in summary["streams"]:
        print(
            f"{entry['name']}: frames {entry['frames']}  failed {entry['failed']}  "
            f"dropped {entry['dropped']}  {entry['fps']:.2f} frames/s"
            + (f"  stopped early: {entry['stopped_because']}" if entry["stopped_because"] else "")
        )
    print(f"all streams: {summary['fps']:.2f} frames/s; exit code {exit_code}")
    if signals.received is not None:
        logger.warning(
            "stopped by %s after %d frames; summaries in %s",
            signals.received.name,
            summary["frames"],
            options.out_dir,
        )
    return exit_code


def run_streams(
    sources: Sequence[str | Path | Source],
    url: str,
    transport: str = "system_shm",
    depth: int = 2,
    out_dir: Path = Path("outputs"),
    max_frames: int | None = None,
    timeout_s: float = TIMEOUT_S,
    reconnect_timeout_s: float = RECONNECT_TIMEOUT_S,
    video_timeout_s: float = VIDEO_TIMEOUT_S,
    decoder: str = "opencv",
    status_interval_s: float = 1.0,
    polygons: bool | None = None,
) -> int:
    """Streams every source at once through the ensemble at `url`, each into
    out_dir/<name>/results.jsonl and summary.json, and sums them up in out_dir/summary.json.

    What the CLI (main) does, callable without building an argv; errors that stop a stream are
    logged and recorded in its summary, not raised.

    Args:
        sources: video files, stream URLs (give them as str), webcams (webcam:N, /dev/videoN),
            image folders, or Source objects (a Source with live=True is streamed newest-wins).
        url: Triton's gRPC endpoint, HOST:PORT.
        transport: one of clients.transports.TRANSPORT_KINDS.
        depth: requests in flight per stream.
        out_dir: where the outputs go; created if missing, an earlier run's outputs removed.
        max_frames: per stream; None: all of each.
        timeout_s, reconnect_timeout_s, video_timeout_s, decoder: as
            clients.stream_video.stream_video.
        status_interval_s: seconds between status lines (at least 1).
        polygons: as clients.stream_video.stream_video.

    Returns:
        The exit code, as the module's documentation lists them (0, 1, 2, 130, 143).

    Raises:
        ValueError: no source, or as clients.runner.StreamSettings.
    """
    return execute(
        StreamsOptions(
            url=url,
            transport=transport,
            depth=depth,
            out_dir=Path(out_dir),
            max_frames=max_frames,
            timeout_s=timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            video_timeout_s=video_timeout_s,
            decoder=decoder,
            sources=tuple(s if isinstance(s, Source) else str(s) for s in sources),
            polygons=polygons,
        ),
        status_interval_s,
    )


COMMAND = command.Command(
    name="streams",
    summary="many sources at once, each its own stream, with live status lines",
    doc=__doc__,
    add_arguments=add_arguments,
    options=options_from_args,
    execute=execute,
)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m clients.streams`: the same as `python -m clients streams`."""
    return command.run(COMMAND.parser("python -m clients.streams"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
