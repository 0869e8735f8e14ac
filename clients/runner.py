"""What every streaming CLI does for one stream, shared by clients.stream_video (one video) and
clients.streams (many sources): its settings checked and parsed, the server waited for, the
frames streamed into the stream's outputs and summary, and whatever stops it recorded there
(never raised) with its exit code.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract
from clients.outputs import Outputs, RunSummary
from clients.reconnect import Reconnect, ServerUnavailable, wait_until_ready
from clients.server_stats import RunStats, stages_of
from clients.stream import FrameOutcome, Unsent, stream_frames
from clients.transports import (
    TRANSPORT_KINDS,
    TransportUnavailable,
    check_transport,
    ensemble_for,
    make_transport,
)
from clients.video import DECODERS, VideoError, check_decoder

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FRAMES_FAILED, EXIT_COULD_NOT_RUN = 0, 1, 2
TIMEOUT_S, RECONNECT_TIMEOUT_S, VIDEO_TIMEOUT_S = 60.0, 30.0, 10.0


@dataclass(frozen=True)
class StreamSettings:
    """What every streaming command takes: the server, the transport, how deep, where results go
    and how long to wait. Checked on construction.

    Raises:
        ValueError: a transport that is unknown or that this host cannot use, depth or
            max_frames below 1, a timeout that is no positive number of seconds
            (reconnect_timeout_s may be 0: check once), a decoder that is unknown or not
            installed, or decoder nvdec with a transport other than cuda.
    """

    url: str  # Triton's gRPC endpoint
    transport: str
    depth: int
    out_dir: Path
    max_frames: int | None  # per stream
    timeout_s: float  # per request
    reconnect_timeout_s: float  # waiting for the server, at the start and after an outage
    video_timeout_s: float  # opening a stream URL, then each of its frames
    decoder: str  # how videos are decoded: clients.video.DECODERS
    # Polygons per frame: None, the deployment's choice; False, skip them (--no-polygons: the
    # server's costliest host step); True, ask for them. Keyword-only: it has a default.
    polygons: bool | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        check_transport(self.transport)
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        _check_seconds("timeout_s", self.timeout_s)
        _check_seconds("reconnect_timeout_s", self.reconnect_timeout_s, zero_ok=True)
        _check_seconds("video_timeout_s", self.video_timeout_s)
        if self.decoder == "nvdec" and self.transport != "cuda":
            raise ValueError(
                f"decoder nvdec leaves the frames on the GPU, and only transport cuda sends them "
                f"from there (got transport {self.transport}): use --transport cuda (the server on "
                "this host and GPU), or decode with opencv or pyav"
            )
        check_decoder(self.decoder)


def settings_from_args(args: argparse.Namespace) -> dict:
    """The StreamSettings fields add_stream_arguments parsed, as keyword arguments."""
    return {name: getattr(args, name) for name in StreamSettings.__dataclass_fields__}


def _check_seconds(name: str, seconds: float, zero_ok: bool = False) -> None:
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {seconds}")


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    """The server's address, which every command takes (streaming ones and `check`)."""
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC endpoint")


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every streaming CLI takes: server, transport, depth, limits, deadlines."""
    add_url_argument(parser)
    parser.add_argument(
        "--transport",
        choices=TRANSPORT_KINDS,
        default="grpc",
        help="how frames travel: grpc (anywhere), jpeg (anywhere: each frame as a JPEG file of "
        "quality 90, decoded by the server, which needs the JPEG ensemble: tools.build_repository "
        "--jpeg), system_shm (server on this host), cuda (server on this host and GPU; needs "
        "cuda-bindings)",
    )
    parser.add_argument("--depth", type=int, default=2, help="requests in flight (per stream)")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument(
        "--timeout-s", type=float, default=TIMEOUT_S, help="per-request deadline (seconds)"
    )
    parser.add_argument(
        "--reconnect-timeout-s",
        type=float,
        default=RECONNECT_TIMEOUT_S,
        help="how long to wait for an unreachable or not ready server, at the start and after "
        "it went away, retrying with growing pauses (0: check once)",
    )
    parser.add_argument(
        "--video-timeout-s",
        type=float,
        default=VIDEO_TIMEOUT_S,
        help="how long a stream URL may take to open and then to deliver each frame",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="opencv",
        help="how videos are decoded (pyav: pip install av; nvdec: video files on the GPU, "
        "with --transport cuda only, pip install PyNvVideoCodec cupy-cuda13x; webcams always use "
        "opencv)",
    )
    parser.add_argument(
        "--no-polygons",
        dest="polygons",
        action="store_const",
        const=False,
        default=None,
        help="ask the server to skip polygons for these frames (masks, boxes and classes only; "
        "without it, the deployment's choice)",
    )


def request_parameters(polygons: bool | None) -> dict[str, bool] | None:
    """The request parameters that carry a polygon choice to the postprocess (the ensemble
    forwards them); None sends none: the deployment's choice."""
    return None if polygons is None else {contract.POLYGONS_PARAMETER: polygons}


def serve(
    url: str,
    frames: Iterable[np.ndarray | Unsent],
    transport: str,
    depth: int,
    timeout_s: float,
    reconnect_timeout_s: float,
    outputs: Callable[[], Outputs],
    summary: RunSummary,
    stop: threading.Event,
    watch: Callable[[Iterable[FrameOutcome]], Iterable[FrameOutcome]] = lambda outcomes: outcomes,
    read_stats: bool = True,
    polygons: bool | None = None,
) -> None:
    """Waits for the server at `url`, streams the frames and writes every outcome, counted in
    `summary` as it is written; returns early when `stop` is set.

    Args:
        url, transport, depth, timeout_s, reconnect_timeout_s: as StreamSettings holds them.
        frames: the stream's frames (or Unsent in place of one).
        outputs: opens the stream's outputs, once the server is ready.
        summary: kept up to date, seconds, outages and statistics included.
        stop: ends the wait for the server and the sending.
        watch: wraps the outcomes as they come (a progress bar, a live display).
        read_stats: read Triton's per-stage statistics for the summary; they are server-wide,
            so a run of many streams leaves them out of each stream's summary.
        polygons: as StreamSettings holds it.

    Raises:
        ServerUnavailable: the server was not ready in time, at the start or after it left.
        InferenceServerException: the server refused the transport's shared memory.
        TimeoutError: the client got stuck waiting for responses.
        OSError: an output could not be written.
    """
    ensemble = ensemble_for(transport)
    with grpcclient.InferenceServerClient(url) as client:
        if not wait_until_ready(client, reconnect_timeout_s, stop, ensemble):
            return
        stats = RunStats(client, stages_of(ensemble)) if read_stats else None
        reconnect = Reconnect(client, reconnect_timeout_s, stop, ensemble)
        start = time.perf_counter()
        try:
            with outputs() as written, make_transport(transport, client, depth) as carrier:
                outcomes = stream_frames(
                    client,
                    frames,
                    carrier,
                    depth,
                    model_name=ensemble,
                    timeout_s=timeout_s,
                    reconnect=reconnect,
                    stop=stop,  # what ends the wait for the server ends the sending too
                    parameters=request_parameters(polygons),
                )
                for outcome in watch(outcomes):
                    if not outcome.ok and not outcome.dropped:
                        logger.error(
                            "%s: frame %d failed: %s", summary.video, outcome.index, outcome.error
                        )
                    written.write(outcome)
                    summary.count(outcome)
        finally:
            summary.took(time.perf_counter() - start)
            summary.server_outages = reconnect.outages
            if stats is None:
                summary.stats_missing = "server-wide: not read per stream of a run of many"
            else:
                summary.stages = stats.since_start(summary.served, reconnect.outages)
                summary.stats_missing = stats.missing


def run_recorded(summary: RunSummary, url: str, work: Callable[[], None]) -> None:
    """Runs `work` (one stream), recording whatever stops it early in summary.stopped_because
    instead of raising: the summary is written all the same."""
    try:
        work()
    except (ServerUnavailable, InferenceServerException) as error:
        summary.stopped_because = f"Triton at {url}: {error}"
    except (VideoError, TransportUnavailable, TimeoutError, OSError) as error:
        summary.stopped_because = str(error)
    except Exception as error:  # a bug: the summary is written all the same
        logger.exception("unexpected error")
        summary.stopped_because = f"unexpected error: {type(error).__name__}: {error}"


def exit_code_of(summary: RunSummary) -> int:
    """2: the stream stopped early; 1: some frames failed or were dropped; 0: all served."""
    if summary.stopped_because is not None:
        return EXIT_COULD_NOT_RUN
    return EXIT_FRAMES_FAILED if summary.failed or summary.dropped else EXIT_OK
