"""perf_analyzer load tests: the ensemble (a real frame in) and the engine alone, per transport.

    python -m benchmarks.perf_analyzer_suite --out benchmarks/results/cpu
    python -m benchmarks.perf_analyzer_suite --url localhost:8001 --out benchmarks/results/t4

Without --url it starts tritonserver on --repository (default build/model_repository). Each run
is one perf_analyzer 2.51 call over gRPC at one concurrency, with inputs sent plainly
(--shared-memory none) or through system shared memory, which needs the server on this host or
sharing its IPC namespace (docker-compose.yml). Every run leaves <target>-<shm>-c<N>.csv (-f)
and .log (its stdout, which alone holds the ensemble's per-step "Composing models" breakdown);
summary.csv and summary.md gather them with the device and the exact commands.
The measurement defaults are the ones that gave stable numbers on a 2-core CPU host.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tritonclient.grpc as grpcclient

from backends.contract import ENGINE, ENGINE_INPUT, ENSEMBLE, IMAGE
from backends.preprocess import preprocess_frame
from benchmarks.host import device_description
from tools.make_sample_video import render_frames
from tools.tritonserver import DEFAULT_TRITON_HOME, REPO_ROOT, TritonServer

FRAME_SHAPE = (480, 640, 3)  # one 640x480 BGR frame per ensemble request
# The ensemble's image input for it: [1, H, W, 3] (contract.ENSEMBLE_INPUTS), the same bytes.
ENSEMBLE_INPUT_SHAPE = (1, *FRAME_SHAPE)
# Per output region, for the ensemble's variable-size outputs (the engine's are fixed, and
# perf_analyzer sizes them from its config). 8 MiB holds 1M polygon points, far more than the
# contours of every detection on a 480x640 frame.
OUTPUT_SHM_BYTES = 8 << 20
TARGETS = {"ensemble": ENSEMBLE, "engine": ENGINE}
SHM_MODES = ("none", "system")
SUITE_MODULE = "benchmarks.perf_analyzer_suite"


@dataclass(frozen=True)
class Run:
    target: str
    shared_memory: str
    concurrency: int

    @property
    def stem(self) -> str:
        return f"{self.target}-{self.shared_memory}-c{self.concurrency}"


@dataclass
class Result:
    run: Run
    command: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # composing model -> ms
    error: str = ""


def find_perf_analyzer() -> str:
    # The tritonclient wheel puts it beside this interpreter, also when the venv is not activated.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("perf_analyzer", path=search)
    if found is None:
        raise FileNotFoundError(
            "perf_analyzer not found: the tritonclient 2.51.0 wheel ships it "
            "(pip install 'tritonclient[grpc]==2.51.0')"
        )
    return found


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer 2.51 loads libb64 and libcudart by soname: the server's copies serve."""
    env = dict(os.environ)
    lib = DEFAULT_TRITON_HOME / "lib"
    if lib.is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(lib), env.get("LD_LIBRARY_PATH")])
        )
    return env


def write_input_data(url: str, data_dir: Path) -> dict[str, list[str]]:
    """Writes one real request per target and returns each target's input arguments; the
    engine's input is at the deployed model's resolution, read from the server."""
    with grpcclient.InferenceServerClient(url) as client:
        engine_dims = list(client.get_model_config(ENGINE).config.input[0].dims)
    return input_arguments(data_dir, engine_dims[-1])


def input_arguments(data_dir: Path, engine_resolution: int) -> dict[str, list[str]]:
    """Writes one real request per target (raw binary files named after the inputs) and returns
    each target's perf_analyzer input arguments.

    The ensemble gets one rendered frame as [1, H, W, 3] (its input's dims are variable, so the
    shape is given); the engine (a batching model) gets that frame preprocessed, [3, R, R] per
    item, perf_analyzer adding the batch axis.
    """
    frame = next(render_frames(1, FRAME_SHAPE[1], FRAME_SHAPE[0]))
    engine_input = preprocess_frame(torch.from_numpy(frame), engine_resolution)[0].numpy()
    arguments = {}
    for target, tensor, name in (
        ("ensemble", frame.reshape(ENSEMBLE_INPUT_SHAPE), IMAGE),
        ("engine", engine_input, ENGINE_INPUT),
    ):
        (data_dir / target).mkdir(parents=True, exist_ok=True)
        (data_dir / target / name).write_bytes(np.ascontiguousarray(tensor).tobytes())
        arguments[target] = ["--input-data", str(data_dir / target)]
    arguments["ensemble"] += ["--shape", f"{IMAGE}:{','.join(map(str, ENSEMBLE_INPUT_SHAPE))}"]
    return arguments


def perf_analyzer_command(
    binary: str, url: str, run: Run, inputs: list[str], csv_path: Path, args: argparse.Namespace
) -> list[str]:
    command = [
        binary,
        "-m", TARGETS[run.target],
        "-u", url,
        "-i", "grpc",
        "--concurrency-range", str(run.concurrency),
        "--measurement-interval", str(args.measurement_interval),
        "--max-trials", str(args.max_trials),
        "--stability-percentage", str(args.stability_percentage),
        "--shared-memory", run.shared_memory,
        "--verbose-csv",
        "-f", str(csv_path),
        *inputs,
    ]
    if run.shared_memory == "system" and run.target == "ensemble":
        command += ["--output-shared-memory-size", str(OUTPUT_SHM_BYTES)]
    return command


_STEP = re.compile(
    r"^\s*(?P<model>\S+), version: \S+$"
    r".*?Avg request latency: (?P<latency>\d+) usec \((?P<parts>[^)]*)\)",
    re.MULTILINE | re.DOTALL,
)
_PART = re.compile(r"(?P<name>[a-z ]+?) (?P<usec>\d+) usec")


def parse_composing_models(stdout: str) -> dict[str, dict[str, float]]:
    """perf_analyzer's "Composing models" section: {model: {latency, overhead, queue,
    compute input, compute infer, compute output}}, ms averaged per request."""
    _, found, section = stdout.partition("Composing models:")
    steps = {}
    for match in _STEP.finditer(section if found else ""):
        parts = {p["name"].strip(): int(p["usec"]) / 1000 for p in _PART.finditer(match["parts"])}
        steps[match["model"]] = {"latency": int(match["latency"]) / 1000, **parts}
    return steps


def parse_csv(path: Path) -> dict[str, float]:
    """The one concurrency row of a perf_analyzer -f CSV, latencies in ms."""
    with path.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    usec_columns = {
        "p50_ms": "p50 latency",
        "p95_ms": "p95 latency",
        "p99_ms": "p99 latency",
        "avg_ms": "Avg latency",
        "server_queue_ms": "Server Queue",
        "server_compute_infer_ms": "Server Compute Infer",
    }
    return {
        "throughput_infer_s": float(row["Inferences/Second"]),
        **{key: float(row[column]) / 1000 for key, column in usec_columns.items()},
    }


def execute(command: list[str], run: Run, out: Path) -> Result:
    result = Result(run, command)
    (out / f"{run.stem}.csv").unlink(missing_ok=True)  # never report an earlier run's numbers
    completed = subprocess.run(command, env=perf_analyzer_env(), capture_output=True, text=True)
    log = f"$ {shlex.join(command)}\n{completed.stdout}{completed.stderr}"
    (out / f"{run.stem}.log").write_text(log)
    if completed.returncode != 0:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-5:]
        result.error = f"perf_analyzer exited {completed.returncode}: " + " | ".join(tail)
        return result
    result.metrics = parse_csv(out / f"{run.stem}.csv")
    result.steps = parse_composing_models(completed.stdout)
    return result


def engine_kind(url: str) -> str:
    """tensorrt_plan, or the ONNX Runtime stand-in (python backend with an onnx_file)."""
    with grpcclient.InferenceServerClient(url) as client:
        config = client.get_model_config(ENGINE).config
    if "onnx_file" in config.parameters:
        return f"ONNX Runtime in the {config.backend} backend"
    return config.platform or f"{config.backend} backend"


STEP_PARTS = ("latency", "queue", "compute input", "compute infer", "compute output")
TABLE_METRICS = ("p50_ms", "p95_ms", "p99_ms", "server_queue_ms", "server_compute_infer_ms")


def summary_rows(results: list[Result]) -> list[dict[str, object]]:
    rows = []
    for r in results:
        row: dict[str, object] = {
            "target": r.run.target,
            "model": TARGETS[r.run.target],
            "shared_memory": r.run.shared_memory,
            "concurrency": r.run.concurrency,
            **{key: round(value, 3) for key, value in r.metrics.items()},
        }
        for model, times in r.steps.items():
            row.update({f"{model} {part} ms": times.get(part, "") for part in STEP_PARTS})
        row["error"] = r.error
        rows.append(row)
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_summary(results: list[Result], out: Path, header: dict[str, str]) -> None:
    rows = summary_rows(results)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    lines = ["# perf_analyzer suite", ""] + [f"- {key}: {value}" for key, value in header.items()]
    table = []
    for r in results:
        run = [r.run.target, r.run.shared_memory, str(r.run.concurrency)]
        if r.error:
            table.append(run + [f"failed: {r.error}"] + [""] * len(TABLE_METRICS))
        else:
            throughput = f"{r.metrics['throughput_infer_s']:.2f}"
            table.append(run + [throughput] + [f"{r.metrics[k]:.1f}" for k in TABLE_METRICS])
    lines += [""] + markdown_table(
        ["target", "shared memory", "concurrency", "infer/s", "p50 ms", "p95 ms", "p99 ms",
         "server queue ms", "server compute ms"],
        table,
    )
    steps = [
        [r.run.shared_memory, str(r.run.concurrency), model]
        + [f"{times[part]:.1f}" if part in times else "" for part in STEP_PARTS]
        for r in results
        for model, times in r.steps.items()
    ]
    if steps:
        lines += ["", "Ensemble steps, server side, ms per request (Composing models):", ""]
        lines += markdown_table(["shared memory", "concurrency", "step", *STEP_PARTS], steps)
    lines += ["", "perf_analyzer commands:", ""] + [f"    {shlex.join(r.command)}" for r in results]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def comma_list(kind: type, choices: tuple | None = None):
    """argparse type: "a,b,c" -> [kind(a), kind(b), kind(c)], each one of choices if given."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v]
        except ValueError:
            values = []
        if not values or (choices and any(v not in choices for v in values)):
            expected = f"values from {', '.join(choices)}" if choices else f"{kind.__name__} values"
            raise argparse.ArgumentTypeError(f"expected comma-separated {expected}, got {text!r}")
        return values

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--url", help="gRPC HOST:PORT of a running server")
    server.add_argument(
        "--repository",
        type=Path,
        default=REPO_ROOT / "build" / "model_repository",
        help="model repository to start tritonserver on when no --url is given",
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--targets", type=comma_list(str, tuple(TARGETS)), default=list(TARGETS),
        help="comma-separated: ensemble, engine (default both)",
    )
    parser.add_argument(
        "--shared-memory", type=comma_list(str, SHM_MODES), default=list(SHM_MODES),
        help="comma-separated: none, system (default both)",
    )
    parser.add_argument(
        "--concurrency", type=comma_list(int), default=[1, 2, 4], help="default 1,2,4"
    )
    parser.add_argument("--measurement-interval", type=int, default=4000, help="ms per window")
    parser.add_argument("--max-trials", type=int, default=8, help="windows before giving up")
    parser.add_argument(
        "--stability-percentage", type=int, default=25,
        help="max spread of 3 consecutive windows, in percent",
    )
    args = parser.parse_args(argv)
    if not args.url and not args.repository.is_dir():
        parser.error(
            f"model repository not found: {args.repository} "
            "(build_engines.sh or tools.build_repository writes one)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = find_perf_analyzer()
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf_suite-")))
        if args.url:
            url, server_text = args.url, args.url
        else:
            server = TritonServer(args.repository.resolve(), work / "tritonserver.log")
            url = stack.enter_context(server).grpc_url
            server_text = f"tritonserver started by the suite on {args.repository}"
        inputs = write_input_data(url, work / "inputs")
        runs = [
            Run(target, shm, concurrency)
            for target in args.targets
            for shm in args.shared_memory
            for concurrency in args.concurrency
        ]
        results = []
        for i, run in enumerate(runs, 1):
            print(f"[{i}/{len(runs)}] {run.stem}", flush=True)
            csv_path = args.out / f"{run.stem}.csv"
            command = perf_analyzer_command(binary, url, run, inputs[run.target], csv_path, args)
            results.append(execute(command, run, args.out))
        suite_argv = sys.argv[1:] if argv is None else argv
        header = {
            "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "device": device_description(),
            "server": f"{server_text}; engine: {engine_kind(url)}",
            "input data": f"one {FRAME_SHAPE[1]}x{FRAME_SHAPE[0]} BGR uint8 frame "
            f"(tools.make_sample_video) for the ensemble, shape {list(ENSEMBLE_INPUT_SHAPE)}, "
            "that frame preprocessed for the engine, written to a temporary folder by the suite",
            "suite command": shlex.join(["python", "-m", SUITE_MODULE, *suite_argv]),
        }
    write_summary(results, args.out, header)
    for r in results:
        if r.error:
            print(f"{r.run.stem}: {r.error}", file=sys.stderr)
    print(args.out / "summary.md")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
