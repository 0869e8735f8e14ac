"""Running perf_analyzer 2.51: finding the binary, one call per Run, and a list of runs in order
of importance inside a time budget."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from benchmarks.perf_analyzer_report import (
    TARGETS,
    Result,
    Run,
    parse_composing_models,
    parse_csv,
    parse_server,
)
from tools.tritonserver import DEFAULT_TRITON_HOME

# perf_analyzer's own start and end around its measurement windows (connecting, shared-memory
# regions, the requests still in flight at the end).
RUN_OVERHEAD_S = 5.0

# What perf_analyzer says of a run whose windows never agreed; its own advice is longer windows.
UNSTEADY = "Failed to obtain stable measurement"


class PerfAnalyzerMissing(RuntimeError):
    """No perf_analyzer 2.51 binary, or one that cannot start here."""


def find_perf_analyzer() -> str:
    """The GPU bundle's (scripts/gpu_bundle.sh puts it beside tritonserver in .triton/bin) first,
    then the tritonclient 2.51 wheel's beside this interpreter (the CPU host's venv), then PATH."""
    search = [str(DEFAULT_TRITON_HOME / "bin"), str(Path(sys.executable).parent)]
    path = os.pathsep.join([*search, os.environ.get("PATH", "")])
    found = shutil.which("perf_analyzer", path=path)
    if found is None:
        raise PerfAnalyzerMissing(
            f"perf_analyzer not found in {search[0]}, beside {sys.executable} or on PATH: the "
            "tritonclient 2.51.0 wheel ships it (pip install 'tritonclient[grpc]==2.51.0'); "
            "scripts/gpu_bundle.sh carries it to a GPU host"
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


def check_perf_analyzer(binary: str) -> str:
    """Its version line; a binary that cannot start (a missing library) is refused before any
    server starts."""
    completed = subprocess.run(
        [binary, "--version"],
        check=False,
        env=perf_analyzer_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0:
        raise PerfAnalyzerMissing(
            f"{binary} does not start (exit {completed.returncode}): {output}"
        )
    return output


@dataclass(frozen=True)
class Windows:
    """How perf_analyzer measures: windows of interval_ms until 3 in a row agree within
    stability_percentage (throughput and average latency), at most max_trials windows; past
    that it reports nothing for the run."""

    interval_ms: int
    max_trials: int
    stability_percentage: int

    def arguments(self) -> list[str]:
        return [
            "--measurement-interval", str(self.interval_ms),
            "--max-trials", str(self.max_trials),
            "--stability-percentage", str(self.stability_percentage),
        ]  # fmt: skip

    @property
    def longest_run_s(self) -> float:
        """What one run takes at most when the server keeps up: every window, plus overhead."""
        return self.max_trials * self.interval_ms / 1000 + RUN_OVERHEAD_S

    @property
    def time_limit_s(self) -> float:
        """When a run is stopped: twice the longest it should take, plus 30 s."""
        return 2 * self.longest_run_s + 30

    def longer(self) -> Windows:
        """The same windows twice as long, for a run that did not steady in these."""
        return replace(self, interval_ms=2 * self.interval_ms)

    def describe(self) -> str:
        return (
            f"{self.interval_ms} ms windows, at most {self.max_trials}, stable when 3 in a row "
            f"agree within {self.stability_percentage}% (throughput and average latency)"
        )


def perf_analyzer_command(
    binary: str,
    url: str,
    run: Run,
    inputs: list[str],
    csv_path: Path,
    windows: Windows,
    output_region_bytes: int,
) -> list[str]:
    """One synchronous gRPC run at one concurrency, batch-1 requests."""
    command = [
        binary,
        "-m", run.model,
        "-u", url,
        "-i", "grpc",
        # An explicit end: synchronous mode then runs one thread per request in flight (without
        # it, --max-threads, 16 by default, caps the concurrency).
        "--concurrency-range", f"{run.concurrency}:{run.concurrency}",
        *windows.arguments(),
        "--shared-memory", run.shared_memory,
        "--verbose-csv",
        "-f", str(csv_path),
        *inputs,
    ]  # fmt: skip
    # The engine's outputs are fixed-size: perf_analyzer sizes their regions from its config.
    if run.shared_memory != "none" and run.target == "ensemble":
        command += ["--output-shared-memory-size", str(output_region_bytes)]
    return command


def execute(command: list[str], run: Run, logs: Path, timeout_s: float) -> Result:
    """One perf_analyzer call; its output goes to <stem>.log, its -f CSV is <stem>.csv."""
    result = Result(run, command)
    csv_path, log_path = logs / f"{run.stem}.csv", logs / f"{run.stem}.log"
    csv_path.unlink(missing_ok=True)  # never report an earlier run's numbers
    try:
        completed = subprocess.run(
            command,
            check=False,
            env=perf_analyzer_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as stopped:
        output = "".join(
            s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
            for s in (stopped.stdout, stopped.stderr)
        )
        log_path.write_text(f"$ {shlex.join(command)}\n{output}")
        result.error = f"stopped after {timeout_s:.0f} s, its time limit"
        return result
    output = completed.stdout + completed.stderr
    log_path.write_text(f"$ {shlex.join(command)}\n{output}")
    if completed.returncode != 0 or not csv_path.exists():
        # The last lines say why; its warnings about single-request windows say nothing.
        tail = [line for line in output.strip().splitlines() if not line.startswith("WARNING")][-2:]
        result.error = f"perf_analyzer exited {completed.returncode}: " + " | ".join(tail)
        return result
    result.metrics = parse_csv(csv_path)
    result.server = parse_server(completed.stdout)
    result.steps = parse_composing_models(completed.stdout)
    return result


def release_shared_memory(url: str, kind: str) -> None:
    """Unregisters every region of a kind ("system" or "cuda"): a perf_analyzer stopped mid-run
    leaves its regions registered, and the next run registers the same names."""
    try:
        with grpcclient.InferenceServerClient(url) as client:
            if kind == "system":
                client.unregister_system_shared_memory()
            else:
                client.unregister_cuda_shared_memory()
    except InferenceServerException as error:  # the server is gone: the next runs say so
        print(f"could not release the {kind} shared-memory regions: {error}", file=sys.stderr)


def spread(values: list[int]) -> list[int]:
    """Distinct values, the extremes first, then the midpoints of the spans left: every prefix
    of the order covers the range as evenly as it can.
    [1, 2, 4, 8, 16, 32] -> [1, 32, 4, 2, 8, 16]."""
    ordered = sorted(set(values))
    if len(ordered) < 3:
        return ordered
    order = [ordered[0], ordered[-1]]
    spans = deque([(0, len(ordered) - 1)])
    while spans:
        low, high = spans.popleft()
        if high - low < 2:
            continue
        middle = (low + high) // 2
        order.append(ordered[middle])
        spans.extend([(low, middle), (middle, high)])
    return order


def plan_runs(targets: list[str], transports: list[str], concurrencies: list[int]) -> list[Run]:
    """The runs, most important first: at each concurrency (spread order) every transport (in
    the order given), the engine alone then the ensemble, so comparisons come in pairs."""
    return [
        Run(target, shm, concurrency)
        for concurrency in spread(concurrencies)
        for shm in dict.fromkeys(transports)
        for target in TARGETS
        if target in targets
    ]


def run_within_budget(
    runs: list[Run],
    execute_run: Callable[[Run, Windows, float], Result],
    deadline: float | None,
    windows: Windows,
    clock: Callable[[], float] = time.monotonic,
) -> list[Result]:
    """Executes the runs in order while the next one can finish before the deadline (a clock()
    value, None: no limit), judged by the longest run so far (before any, the longest a run
    should take); the rest are recorded as skipped. A run is stopped at its windows' time limit
    or at the deadline. A run whose windows did not steady is executed
    once more in windows twice as long when that can finish before the deadline (its result's
    unsteady_ms says so): on the H200 host the engine alone at 16 steadied so, twice."""
    results: list[Result] = []
    expected_s = windows.longest_run_s
    longer = windows.longer()
    longest_s = 0.0
    for i, run in enumerate(runs):
        left = _left(deadline, clock)
        needed = longest_s or expected_s
        if left < needed:
            reason = f"over the budget: {max(left, 0):.0f} s left, a run takes up to {needed:.0f} s"
            results += [Result(r, [], skipped=reason) for r in runs[i:]]
            break
        started = clock()
        result = execute_run(run, windows, min(windows.time_limit_s, left))
        took_s = clock() - started
        longest_s = max(longest_s, took_s)  # the next run's estimate: first tries only
        left = _left(deadline, clock)
        if UNSTEADY in result.error and left >= longer.longest_run_s:
            print(f"[{i + 1}/{len(runs)}] {run.stem}: not steady in {took_s:.1f} s; again in "
                  f"{longer.interval_ms} ms windows", flush=True)  # fmt: skip
            result = execute_run(run, longer, min(longer.time_limit_s, left))
            result.unsteady_ms = windows.interval_ms
            took_s = clock() - started
        results.append(result)
        outcome = "ok" if result.ok else "failed"
        print(f"[{i + 1}/{len(runs)}] {run.stem}: {outcome} in {took_s:.1f} s", flush=True)
    return results


def _left(deadline: float | None, clock: Callable[[], float]) -> float:
    return math.inf if deadline is None else deadline - clock()
