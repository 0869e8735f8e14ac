"""perf_analyzer load tests: the engine alone and the ensemble, side by side, per transport and
concurrency, with the ensemble's per-step breakdown.

    python -m benchmarks.perf_analyzer_suite --target cpu --out DIR     # builds and serves a target
    python -m benchmarks.perf_analyzer_suite --url HOST:8001 --out DIR  # a running server
    python -m benchmarks.perf_analyzer_suite --repository REPO --out DIR  # serves REPO (its target's options)

The GPU run (1080p, concurrency 1..32, three transports, inside a time budget):

    python -m benchmarks.perf_analyzer_suite --target gpu --frame-size 1920x1080 \\
        --concurrency 1,2,4,8,16,32 --shared-memory none,system,cuda \\
        --measurement-interval 1500 --max-trials 5 --budget-s 420 --tar-logs --out DIR

With --target the suite builds the repository as benchmarks.bench_pipeline does (the exported
RF-DETR-Seg-Nano with random weights, made if missing, or --onnx) and starts tritonserver with
the target's server options. Every run is one perf_analyzer 2.51 call over gRPC at one
concurrency, batch-1 requests: the ensemble gets one rendered frame, the engine that frame
preprocessed ([1, 3, R, R], backends.contract), and with --targets ...,jpeg the JPEG ensemble
that frame as a JPEG file of quality 90 (its repository built with --jpeg). Inputs travel plainly (none), through system
shared memory (the server on this host) or CUDA shared memory (a GPU on this host). Runs go in
order of importance (perf_analyzer_runs.plan_runs), so a --budget-s that cuts the tail still
leaves paired comparisons across the range; a run whose windows do not steady is measured once
more in windows twice as long where the budget allows, and summary.md says so. Each run leaves
<target>-<shm>-c<N>.csv (-f) and .log (its output: the server-side and "Composing models"
sections); summary.md and summary.csv gather them with the device and the commands; --tar-logs
packs the per-run files and the server log into logs.tar.gz, so the results are three files.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends.contract import ENGINE, ENGINE_INPUT, ENSEMBLE, ENSEMBLE_OUTPUTS, IMAGE, JPEG
from backends.jpeg_files import JPEG_QUALITY, encode_jpeg
from backends.preprocess import preprocess_frame
from benchmarks.host import device_description
from benchmarks.perf_analyzer_report import (
    TARGETS,
    Result,
    Run,
    comparison_table,
    write_csv,
    write_markdown,
)
from benchmarks.perf_analyzer_runs import (
    PerfAnalyzerMissing,
    Windows,
    check_perf_analyzer,
    execute,
    find_perf_analyzer,
    perf_analyzer_command,
    plan_runs,
    release_shared_memory,
    run_within_budget,
)
from tools.build_repository import (
    build_repository,
    check_readable,
    repository_target,
    spec_from_files,
)
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, random_weights_export
from tools.make_sample_video import render_frames
from tools.targets import TARGETS as DEPLOY_TARGETS
from tools.tritonserver import REPO_ROOT, ServerStartError, TritonServer

SHM_MODES = ("none", "system", "cuda")
DEFAULT_FRAME_SIZE = (640, 480)  # width, height
SUITE_MODULE = "benchmarks.perf_analyzer_suite"
BUILT_REPOSITORY = REPO_ROOT / "build" / "perf_repository"
# Seconds kept free at the end of --budget-s: the summary, the tarball, stopping the server.
TEARDOWN_S = 15.0


class SuiteError(RuntimeError):
    """The suite cannot measure: the server does not serve the test frame."""


def rendered_frame(frame_size: tuple[int, int]) -> np.ndarray:
    """The frame every request carries: the sample video's first (moving shapes), H x W x 3."""
    width, height = frame_size
    return next(render_frames(1, width, height))


def input_arguments(
    data_dir: Path, engine_resolution: int, frame_size: tuple[int, int]
) -> dict[str, list[str]]:
    """Writes one real request per target (raw binary files named after the inputs) and returns
    each target's perf_analyzer input arguments.

    The ensemble gets one rendered frame as [1, H, W, 3] (its input's dims are variable, so the
    shape is given); the JPEG ensemble that frame as a JPEG file, [1, N] bytes; the engine (a
    batching model) gets that frame preprocessed, [3, R, R] per item, perf_analyzer adding the
    batch axis.
    """
    frame = rendered_frame(frame_size)
    engine_input = preprocess_frame(torch.from_numpy(frame), engine_resolution)[0].numpy()
    jpeg = encode_jpeg(frame)  # as the jpeg transport sends it
    arguments = {}
    for target, tensor, name in (
        ("ensemble", frame[None], IMAGE),
        ("jpeg", jpeg[None], JPEG),
        ("engine", engine_input, ENGINE_INPUT),
    ):
        (data_dir / target).mkdir(parents=True, exist_ok=True)
        (data_dir / target / name).write_bytes(np.ascontiguousarray(tensor).tobytes())
        arguments[target] = ["--input-data", str(data_dir / target)]
    arguments["ensemble"] += ["--shape", f"{IMAGE}:1,{frame.shape[0]},{frame.shape[1]},3"]
    arguments["jpeg"] += ["--shape", f"{JPEG}:1,{jpeg.size}"]
    return arguments


def output_region_bytes(largest_output_bytes: int) -> int:
    """Each ensemble output's shared-memory region: twice the largest output the frame gave
    (every request carries that frame; batching may move a detection across the threshold),
    in whole MiB, at least 1 MiB."""
    mib = 1 << 20
    return max(mib, math.ceil(2 * largest_output_bytes / mib) * mib)


def largest_ensemble_output(url: str, frame: np.ndarray) -> int:
    """Serves the frame once through the ensemble (plain gRPC) and returns its largest output's
    bytes: the ensemble's outputs are variable-size, and perf_analyzer needs a region size."""
    image = grpcclient.InferInput(IMAGE, [1, *frame.shape], "UINT8")
    image.set_data_from_numpy(frame[None])
    with grpcclient.InferenceServerClient(url) as client:
        try:
            result = client.infer(ENSEMBLE, [image], client_timeout=120)
        except InferenceServerException as error:
            raise SuiteError(f"the ensemble did not serve the test frame: {error}") from None
    return max(result.as_numpy(spec.name).nbytes for spec in ENSEMBLE_OUTPUTS)


def engine_kind(url: str) -> str:
    """tensorrt_plan, or the python backend's engines (their file parameter says which)."""
    with grpcclient.InferenceServerClient(url) as client:
        config = client.get_model_config(ENGINE).config
    if "onnx_file" in config.parameters:
        return f"ONNX Runtime in the {config.backend} backend"
    if "weights_file" in config.parameters:
        return f"torch in the {config.backend} backend"
    return config.platform or f"{config.backend} backend"


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: "WxH" -> (width, height), both >= 1."""
    width, x, height = text.lower().partition("x")
    if x and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0:
        return int(width), int(height)
    raise argparse.ArgumentTypeError(
        f"expected WIDTHxHEIGHT in pixels, like 1920x1080, got {text!r}"
    )


def comma_list(kind: type, choices: tuple | None = None):
    """argparse type: "a,b,c" -> [kind(a), kind(b), kind(c)], each one of choices if given,
    numbers >= 1."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v]
        except ValueError:
            values = []
        if not values or any((v not in choices) if choices else v < 1 for v in values):
            expected = (
                f"values from {', '.join(choices)}" if choices else f"{kind.__name__} values >= 1"
            )
            raise argparse.ArgumentTypeError(f"expected comma-separated {expected}, got {text!r}")
        return values

    return parse


def positive(kind: type):
    """argparse type: a number > 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:  # NaN included
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--url", help="gRPC HOST:PORT of a running server")
    server.add_argument(
        "--target", choices=list(DEPLOY_TARGETS), help="build this target's repository and serve it"
    )
    server.add_argument(
        "--repository",
        type=Path,
        default=REPO_ROOT / "build" / "model_repository",
        help="model repository to serve as it is (default build/model_repository)",
    )
    parser.add_argument("--engine", help="with --target: its engine (default: the target's first)")
    parser.add_argument(
        "--onnx",
        type=Path,
        help="with --target: the exported ONNX, weights and class table beside it, score "
        "threshold 0.5 (default: RF-DETR-Seg-Nano with random weights, exported if missing, "
        f"threshold {RANDOM_WEIGHTS_THRESHOLD})",
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--targets",
        type=comma_list(str, tuple(TARGETS)),
        default=["engine", "ensemble"],
        help="comma-separated: engine, ensemble, jpeg (the JPEG ensemble: with --target it is "
        "built in; a --repository or --url server needs it, tools.build_repository --jpeg) "
        "(default engine,ensemble)",
    )
    parser.add_argument(
        "--shared-memory",
        type=comma_list(str, SHM_MODES),
        default=["none", "system"],
        help="comma-separated, most important first: none, system, cuda (default none,system)",
    )
    parser.add_argument(
        "--concurrency",
        type=comma_list(int),
        default=[1, 2, 4],
        help="requests in flight (default 1,2,4)",
    )
    parser.add_argument(
        "--frame-size",
        type=frame_size,
        default=DEFAULT_FRAME_SIZE,
        help="WIDTHxHEIGHT of the frame each ensemble request carries (default 640x480)",
    )
    # The defaults gave stable numbers on the 2-core CPU host; a GPU settles in shorter windows.
    parser.add_argument(
        "--measurement-interval", type=positive(int), default=4000, help="ms per window"
    )
    parser.add_argument(
        "--max-trials", type=positive(int), default=8, help="windows before giving up"
    )
    parser.add_argument(
        "--stability-percentage",
        type=positive(int),
        default=25,
        help="max spread of 3 consecutive windows, in percent",
    )
    parser.add_argument(
        "--budget-s",
        type=positive(float),
        help="wall-clock seconds for the whole suite, server start included: runs that would "
        "not finish in time are skipped, and the summary says so",
    )
    parser.add_argument(
        "--tar-logs",
        action="store_true",
        help="pack the per-run CSVs and logs and the server log into logs.tar.gz",
    )
    args = parser.parse_args(argv)
    if args.target is None and (args.engine or args.onnx):
        parser.error("--engine and --onnx need --target (they say what the suite builds)")
    if args.target is not None:
        engines = DEPLOY_TARGETS[args.target].engines
        if args.engine is not None and args.engine not in engines:
            parser.error(
                f"target {args.target} serves the engines {list(engines)}, not {args.engine!r}"
            )
        if args.onnx is not None:
            try:
                check_readable(args.onnx, "ONNX file")
            except OSError as error:
                parser.error(str(error))
    elif not args.url and not args.repository.is_dir():
        parser.error(
            f"model repository not found: {args.repository} "
            "(--target builds one; so do tools.build_repository and build_engines.sh)"
        )
    elif not args.url:
        try:
            repository_target(args.repository)  # its server options, read when the server starts
        except ValueError as error:
            parser.error(str(error))
    if "cuda" in args.shared_memory and not torch.cuda.is_available():
        parser.error(
            "--shared-memory cuda needs a CUDA device on this host "
            "(perf_analyzer puts the regions there)"
        )
    return args


def start_server(args: argparse.Namespace, logs: Path, stack: ExitStack) -> tuple[str, str]:
    """The server's gRPC URL and a line saying what it serves: --url as given, or tritonserver
    started here on --repository, or on the --target's repository built as bench_pipeline does."""
    if args.url:
        return args.url, args.url
    if args.target is None:
        target = repository_target(args.repository)
        server = stack.enter_context(
            TritonServer.for_target(args.repository.resolve(), logs / "tritonserver.log", target)
        )
        return server.grpc_url, (
            f"tritonserver started by the suite on {args.repository}, server options: {server.options_text()}"
        )
    target = DEPLOY_TARGETS[args.target]
    if args.onnx is None:
        exported = random_weights_export("nano", REPO_ROOT / "build" / "engines" / "random")
        onnx, threshold, weights = exported.onnx, RANDOM_WEIGHTS_THRESHOLD, exported.weights
    else:
        onnx, threshold, weights = args.onnx, 0.5, None
    spec = spec_from_files(target.name, args.engine, onnx, threshold, weights=weights, jpeg="jpeg" in args.targets)
    repository = build_repository(spec, BUILT_REPOSITORY)
    server = stack.enter_context(TritonServer.for_target(repository, logs / "tritonserver.log", target))
    return server.grpc_url, (
        f"tritonserver started by the suite: target {target.name}, engine {spec.engine} "
        f"({onnx.name}, score threshold {threshold}), server options: {server.options_text()}"
    )


def measure(
    args: argparse.Namespace, binary: str, logs: Path, work: Path, started: float
) -> tuple[list[Result], dict[str, str]]:
    """Starts (or reaches) the server, writes the requests, executes the runs; the results and
    the summary's header lines."""
    windows = Windows(args.measurement_interval, args.max_trials, args.stability_percentage)
    with ExitStack() as stack:
        url, server_text = start_server(args, logs, stack)
        print(f"server ready at {time.monotonic() - started:.0f} s: {server_text}", flush=True)
        with grpcclient.InferenceServerClient(url) as client:
            resolution = int(client.get_model_config(ENGINE).config.input[0].dims[-1])
        inputs = input_arguments(work / "inputs", resolution, args.frame_size)
        region, region_text = 0, "not used"
        if "ensemble" in args.targets and set(args.shared_memory) != {"none"}:
            largest = largest_ensemble_output(url, rendered_frame(args.frame_size))
            region = output_region_bytes(largest)
            region_text = (
                f"{region >> 20} MiB per ensemble output (the largest was {largest} bytes)"
            )

        def execute_run(run: Run, run_windows: Windows, timeout_s: float) -> Result:
            csv_path = logs / f"{run.stem}.csv"
            command = perf_analyzer_command(
                binary, url, run, inputs[run.target], csv_path, run_windows, region
            )
            result = execute(command, run, logs, timeout_s)
            if result.error.startswith("stopped") and run.shared_memory != "none":
                release_shared_memory(url, run.shared_memory)
            return result

        deadline = None if args.budget_s is None else started + args.budget_s - TEARDOWN_S
        runs = plan_runs(args.targets, args.shared_memory, args.concurrency)
        results = run_within_budget(runs, execute_run, deadline, windows)
        width, height = args.frame_size
        header = {
            "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "device": device_description(),
            "server": f"{server_text}; engine: {engine_kind(url)}",
            "input data": f"one {width}x{height} BGR uint8 frame (tools.make_sample_video) for the "
            f"ensemble, [1, {height}, {width}, 3]; that frame preprocessed for the engine, "
            f"[1, 3, {resolution}, {resolution}] float32"
            + (f"; that frame as a JPEG file of quality {JPEG_QUALITY} for the JPEG ensemble, "
               f"{inputs['jpeg'][-1].split(',')[-1]} bytes" if "jpeg" in args.targets else ""),
            "output shared memory": region_text,
            "measurement": windows.describe(),
        }
    return results, header


def pack_logs(logs: Path, tarball: Path) -> None:
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(logs.iterdir()):
            tar.add(path, arcname=f"logs/{path.name}")


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    try:
        binary = find_perf_analyzer()
        version = check_perf_analyzer(binary)
        args.out.mkdir(parents=True, exist_ok=True)
    except (PerfAnalyzerMissing, OSError) as error:
        print(f"perf_analyzer_suite: error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="perf_suite-") as tmp:
        work = Path(tmp)
        logs = work / "logs" if args.tar_logs else args.out
        logs.mkdir(exist_ok=True)
        try:
            results, header = measure(args, binary, logs, work, started)
        except (
            SuiteError,
            ServerStartError,
            ValueError,
            OSError,
            InferenceServerException,
        ) as error:
            print(f"perf_analyzer_suite: error: {error}", file=sys.stderr)
            return 2
        failed = [r for r in results if r.error]
        skipped = [r for r in results if r.skipped]
        header["perf_analyzer"] = f"{version}, gRPC, synchronous, batch-1 requests"
        header["runs"] = (
            f"{len(results) - len(failed) - len(skipped)} measured, {len(failed)} failed, "
            f"{len(skipped)} skipped; suite wall time {time.monotonic() - started:.0f} s"
            + (f" of a {args.budget_s:.0f} s budget" if args.budget_s else "")
        )
        suite_argv = sys.argv[1:] if argv is None else argv
        header["suite command"] = shlex.join(["python", "-m", SUITE_MODULE, *suite_argv])
        write_csv(results, args.out / "summary.csv")
        write_markdown(results, args.out / "summary.md", header)
        if args.tar_logs:
            pack_logs(logs, args.out / "logs.tar.gz")
    print("\n".join(comparison_table(results)))
    for r in failed + skipped:
        print(f"{r.run.stem}: {r.error or r.skipped}", file=sys.stderr)
    print(f"{header['runs']}\n{args.out / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
