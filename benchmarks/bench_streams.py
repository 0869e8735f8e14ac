"""Many concurrent camera streams through the served ensemble, per transport and depth.

    python -m benchmarks.bench_streams (--repository DIR | --url HOST:PORT) \\
        [--transports cuda,system_shm,grpc] [--depths 1,2,3] [--streams 1,4,16,32] \\
        [--seconds 5] [--max-frames N] [--warmup-s 10] [--video in.mp4 | --width 1920 \\
        --height 1080 --video-frames 600] [--out build/bench_streams.md]

Each configuration (transport x depth x number of streams) runs N streams of the same video
file at once, each exactly as clients.streams runs one (clients.streams.stream_one: its own
thread, gRPC client, transport ring, in-order results written to results.jsonl), until every
stream ended its video or --max-frames, or --seconds passed (then the streams stop sending and
their frames in flight come back). A warm-up at the largest configuration runs first (the
server's kernels compile for batch sizes they have not seen). Reported per configuration:
aggregate frames/s (frames served by all streams / wall time from the first stream's start to
the last one's end), latency p50/p99 over every served frame (request sent to response in), and
the failed and dropped frames (a file waits for the server: drops mean a live source).

Without --video, a synthetic clip (tools.make_sample_video) of --width x --height is rendered
once into build/bench_streams/. With --repository the server is started here on that
repository (with the tritonserver options of the target it was built for); --url uses a running one. The table goes
to stdout and, with the device and this command, to --out (markdown). Ctrl-C stops the sweep
and writes what was measured. Exit code 0; 1 when frames failed or a stream stopped early (see
the table); 130/143 when stopped by a signal.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.host import device_description
from clients import streams
from clients.signals import StopOnSignals
from clients.status import StreamStatus
from clients.stream import FrameOutcome
from clients.transports import check_transport
from tools.build_repository import repository_target
from tools.make_sample_video import make_sample_video
from tools.tritonserver import REPO_ROOT, ServerStartError, TritonServer

WORK_DIR = REPO_ROOT / "build" / "bench_streams"


class LatencyLog(StreamStatus):
    """A stream's counters, plus the latency of every frame it served (for the percentiles of
    the whole configuration, where StreamStatus keeps only recent ones)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.latencies_ms: list[float] = []

    def count(self, outcome: FrameOutcome) -> None:
        super().count(outcome)
        if outcome.ok:
            self.latencies_ms.append(outcome.latency_s * 1000)


@dataclass
class Measured:
    """One configuration's outcome, all streams together."""

    transport: str
    depth: int
    streams: int
    seconds: float
    served: int
    failed: int
    dropped: int
    p50_ms: float
    p99_ms: float
    died: list[str]  # why streams stopped early (none: every stream went through)

    @property
    def frames_per_s(self) -> float:
        return self.served / self.seconds if self.seconds > 0 else 0.0

    def row(self) -> str:
        died = "; ".join(sorted(set(self.died)))
        return (
            f"| {self.transport} | {self.depth} | {self.streams} | {self.frames_per_s:.1f} | "
            f"{self.p50_ms:.1f} | {self.p99_ms:.1f} | {self.served} | {self.failed} | "
            f"{self.dropped} | {self.seconds:.1f} |" + (f" {died} |" if died else " |")
        )


HEADER = [
    "| transport | depth | streams | frames/s | p50 ms | p99 ms | served | failed | dropped "
    "| seconds | stopped early |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
]


def stream_options(
    url: str, video: Path, transport: str, depth: int, max_frames: int | None
) -> streams.StreamsOptions:
    """What clients.streams takes on its command line for these, checked as it checks them;
    its defaults for the rest (timeouts, decoder)."""
    argv = ["--source", str(video), "--url", url, "--transport", transport, "--depth", str(depth)]
    argv += ["--reconnect-timeout-s", "5"]  # a server gone mid-sweep fails frames, no long wait
    if max_frames is not None:
        argv += ["--max-frames", str(max_frames)]
    return streams.parse_args(argv)


def run_configuration(
    options: streams.StreamsOptions, count: int, seconds: float, interrupted: threading.Event
) -> Measured:
    """`count` streams of options.sources[0] at once, for at most `seconds` (or until
    `interrupted`)."""
    statuses = [LatencyLog(f"stream-{i}") for i in range(count)]
    summaries = [None] * count
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench_streams_") as out:

        def one(i: int) -> None:
            out_dir = Path(out) / statuses[i].name
            out_dir.mkdir()
            summaries[i] = streams.stream_one(
                options.sources[0], out_dir, options, stop, statuses[i]
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        deadline = start + seconds
        for thread in threads:
            # Short joins: the main thread must come back to Python for the signal handlers.
            while thread.is_alive():
                thread.join(0.1)
                if interrupted.is_set() or time.perf_counter() > deadline:
                    stop.set()
        took = time.perf_counter() - start
    latencies = np.concatenate([np.asarray(s.latencies_ms) for s in statuses])
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (np.nan, np.nan)
    return Measured(
        options.transport,
        options.depth,
        count,
        took,
        served=sum(s.served for s in summaries),
        failed=sum(s.failed for s in summaries),
        dropped=sum(s.dropped for s in summaries),
        p50_ms=float(p50),
        p99_ms=float(p99),
        died=[s.stopped_because for s in summaries if s.stopped_because is not None],
    )


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"need a whole number >= 1, got {text!r}")
    return int(text)


def positive_ints(text: str) -> list[int]:
    return [positive_int(v) for v in text.split(",")]


def transports(text: str) -> list[str]:
    """Transport kinds, each one this host can use (clients.transports.check_transport)."""
    kinds = text.split(",")
    for kind in kinds:
        try:
            check_transport(kind)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return kinds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--repository", type=Path, help="model repository to serve here")
    server.add_argument("--url", help="a running server's gRPC endpoint, HOST:PORT")
    parser.add_argument("--transports", type=transports, default=["cuda", "system_shm", "grpc"])
    parser.add_argument("--depths", type=positive_ints, default=[1, 2, 3])
    parser.add_argument("--streams", type=positive_ints, default=[1, 4, 16, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration, at most")
    parser.add_argument(
        "--max-frames", type=positive_int, help="per stream and configuration, at most"
    )
    parser.add_argument("--warmup-s", type=float, default=10.0, help="0: no warm-up")
    parser.add_argument("--video", type=Path, help="default: a rendered synthetic clip")
    parser.add_argument("--width", type=positive_int, default=1920)
    parser.add_argument("--height", type=positive_int, default=1080)
    parser.add_argument("--video-frames", type=positive_int, default=600, help="of the clip")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench_streams.md")
    args = parser.parse_args(argv)
    if not args.seconds > 0 or not args.warmup_s >= 0:
        parser.error(f"need --seconds > 0 and --warmup-s >= 0, got {args.seconds}, {args.warmup_s}")
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video {args.video}: no such file")
    if args.repository is not None:
        try:
            repository_target(args.repository)  # its server options, read when the server starts
        except ValueError as error:
            parser.error(str(error))
    return args


def the_video(args: argparse.Namespace) -> Path:
    if args.video is not None:
        return args.video
    path = WORK_DIR / f"sample-{args.width}x{args.height}-{args.video_frames}.mp4"
    if not path.exists():
        print(f"rendering {path} ...", file=sys.stderr)
        make_sample_video(path, args.video_frames, args.width, args.height, fps=30)
    return path


def the_server(args: argparse.Namespace) -> TritonServer:
    """The server on --repository, with its target's options; not started."""
    return TritonServer.for_target(args.repository, WORK_DIR / "tritonserver.log", repository_target(args.repository))


def report(
    args: argparse.Namespace,
    argv: Sequence[str],
    video: Path,
    rows: list[Measured],
    interrupted_by: str | None,
) -> str:
    served_by = f"repository {args.repository}" if args.url is None else f"server at {args.url}"
    limit = f"{args.seconds:g} s"
    if args.max_frames is not None:
        limit += f" or {args.max_frames} frames a stream"
    lines = [
        "# Streams benchmark: concurrent streams per transport and depth",
        "",
        f"Device: {device_description()}",
        f"Command: python -m benchmarks.bench_streams {shlex.join(argv)}",
        f"Served by: {served_by}; video {video.name}; each configuration at most {limit}, after "
        f"a {args.warmup_s:g} s warm-up.",
        "frames/s: frames served by all streams / wall time; latency: request sent to response "
        "in, over every served frame of the configuration.",
        "",
        *HEADER,
        *(row.row() for row in rows),
    ]
    if interrupted_by is not None:
        lines += ["", f"Stopped by {interrupted_by}: the last configuration was cut short."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        video = the_video(args)
    except (ValueError, OSError) as error:
        print(f"bench_streams: no video: {error}", file=sys.stderr)
        return 2
    rows: list[Measured] = []
    with contextlib.ExitStack() as stack:
        if args.url is None:
            try:
                url = stack.enter_context(the_server(args)).grpc_url
            except ServerStartError as error:
                print(f"bench_streams: the server did not start: {error}", file=sys.stderr)
                return 2
        else:
            url = args.url
        signals = stack.enter_context(StopOnSignals())

        def options(transport: str, depth: int) -> streams.StreamsOptions:
            return stream_options(url, video, transport, depth, args.max_frames)

        if args.warmup_s > 0:
            print(f"warm-up: {args.warmup_s:g} s", file=sys.stderr)
            warm_up = options(args.transports[0], max(args.depths))
            run_configuration(warm_up, max(args.streams), args.warmup_s, signals.event)
        print("\n".join(HEADER))
        sweep = itertools.product(args.transports, args.depths, args.streams)
        for transport, depth, count in sweep:
            if signals.event.is_set():
                break
            measured = run_configuration(
                options(transport, depth), count, args.seconds, signals.event
            )
            rows.append(measured)
            print(measured.row(), flush=True)
        # Written before the server stops: on the H200 a command's time limit ran out during the
        # server's shutdown, after the table was printed, and the file was never written.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        received = None if signals.received is None else signals.received.name
        args.out.write_text(report(args, argv, video, rows, received) + "\n")
        print(f"written: {args.out}", file=sys.stderr)
    if signals.exit_code is not None:
        return signals.exit_code
    return 1 if any(row.failed or row.died for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
