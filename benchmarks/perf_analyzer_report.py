"""What one perf_analyzer 2.51 run reports, and the suite's summary of many runs.

perf_analyzer writes its client-side numbers to its -f CSV; the server side (batches the dynamic
batcher formed, queue and compute per request) and, for an ensemble, the same per composing
model, appear only in its stdout. The summary puts the engine alone and the ensemble side by
side at each transport and concurrency, with the ensemble's per-step breakdown: where its
time goes against the engine's.
"""

from __future__ import annotations

import csv
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from backends.contract import (
    ENGINE,
    ENSEMBLE,
    JPEG_ENSEMBLE,
    POSTPROCESS,
    PREPROCESS,
    PREPROCESS_JPEG,
)

# "jpeg": the ensemble taking the frame as a JPEG file (a repository built with --jpeg).
TARGETS = {"engine": ENGINE, "ensemble": ENSEMBLE, "jpeg": JPEG_ENSEMBLE}
# What each ensemble-like target is compared with the engine alone under.
ENSEMBLE_TARGETS = {"ensemble": "ensemble", "jpeg": "JPEG ensemble"}
# The bar: the ensemble keeps at least this share of the engine's throughput.
THROUGHPUT_BAR = 0.9
STEP_ORDER = (PREPROCESS, PREPROCESS_JPEG, ENGINE, POSTPROCESS)
STEP_PARTS = ("queue", "compute input", "compute infer", "compute output")
SERVER_SIDE = (
    "Server side, ms per request (perf_analyzer's Server and Composing models sections); "
    "batch = requests per execution:"
)


@dataclass(frozen=True)
class Run:
    """One perf_analyzer call: a target (one of TARGETS), a transport, a concurrency."""

    target: str
    shared_memory: str
    concurrency: int

    @property
    def model(self) -> str:
        return TARGETS[self.target]

    @property
    def stem(self) -> str:
        return f"{self.target}-{self.shared_memory}-c{self.concurrency}"


@dataclass(frozen=True)
class ServerTimes:
    """One model's server-side statistics over the measurement: ms per request, averaged."""

    inferences: int
    executions: int
    latency_ms: float
    parts_ms: dict[str, float]  # overhead, queue, compute input, compute infer, compute output

    @property
    def batch(self) -> float:
        """Requests per execution: the batches its dynamic batcher formed, on average."""
        return self.inferences / self.executions if self.executions else 0.0


@dataclass
class Result:
    run: Run
    command: list[str]
    metrics: dict[str, float] = field(default_factory=dict)  # from the -f CSV
    server: ServerTimes | None = None  # the model perf_analyzer drove
    steps: dict[str, ServerTimes] = field(default_factory=dict)  # an ensemble's composing models
    error: str = ""  # perf_analyzer failed or was stopped
    skipped: str = ""  # not run, and why
    unsteady_ms: int = 0  # the window length of a first try that did not steady (0: none)

    @property
    def ok(self) -> bool:
        return not (self.error or self.skipped)


_COUNTS = (
    r"Inference count: (?P<inferences>\d+)\s+Execution count: (?P<executions>\d+)\s+"
    r"Successful request count: \d+\s+"
    r"Avg request latency: (?P<latency>\d+) usec \((?P<parts>[^)]*)\)"
)
_SERVER = re.compile(r"^\s*Server:\s*$\s+" + _COUNTS, re.MULTILINE)
_STEP = re.compile(r"^\s*(?P<model>\S+), version: \S+\s*$\s+" + _COUNTS, re.MULTILINE)
_PART = re.compile(r"(?P<name>[a-z ]+?) (?P<usec>\d+) usec")


def _times(match: re.Match) -> ServerTimes:
    parts = {p["name"].strip(): int(p["usec"]) / 1000 for p in _PART.finditer(match["parts"])}
    return ServerTimes(
        int(match["inferences"]), int(match["executions"]), int(match["latency"]) / 1000, parts
    )


def parse_server(stdout: str) -> ServerTimes | None:
    """The "Server:" block: the model perf_analyzer drove (for an ensemble, the whole of it)."""
    match = _SERVER.search(stdout)
    return _times(match) if match else None


def parse_composing_models(stdout: str) -> dict[str, ServerTimes]:
    """The "Composing models:" section of an ensemble's report, {model: times}; {} otherwise."""
    _, found, section = stdout.partition("Composing models:")
    return {m["model"]: _times(m) for m in _STEP.finditer(section)} if found else {}


CSV_USEC_COLUMNS = {
    "p50_ms": "p50 latency",
    "p95_ms": "p95 latency",
    "p99_ms": "p99 latency",
    "avg_ms": "Avg latency",
}


def parse_csv(path: Path) -> dict[str, float]:
    """The one concurrency row of a perf_analyzer -f CSV: infer/s and client latencies in ms."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise ValueError(f"{path}: expected one concurrency row, found {len(rows)}")
    (row,) = rows
    return {
        "throughput_infer_s": float(row["Inferences/Second"]),
        **{key: float(row[column]) / 1000 for key, column in CSV_USEC_COLUMNS.items()},
    }


def _ordered_steps(steps: dict[str, ServerTimes]) -> list[str]:
    return sorted(steps, key=lambda m: (STEP_ORDER.index(m) if m in STEP_ORDER else 99, m))


def summary_rows(results: list[Result]) -> list[dict[str, object]]:
    """One CSV row per run; an ensemble row also carries its throughput over the engine's."""
    engine_throughput = {
        (r.run.shared_memory, r.run.concurrency): r.metrics["throughput_infer_s"]
        for r in results
        if r.ok and r.run.target == "engine"
    }
    rows = []
    for r in results:
        row: dict[str, object] = {
            "target": r.run.target,
            "model": r.run.model,
            "shared_memory": r.run.shared_memory,
            "concurrency": r.run.concurrency,
            **{key: round(value, 3) for key, value in r.metrics.items()},
        }
        engine = engine_throughput.get((r.run.shared_memory, r.run.concurrency))
        if r.ok and r.run.target == "ensemble" and engine:
            row["ensemble_over_engine"] = round(r.metrics["throughput_infer_s"] / engine, 3)
        for name, times in ([("server", r.server)] if r.server else []) + [
            (m, r.steps[m]) for m in _ordered_steps(r.steps)
        ]:
            row[f"{name} batch"] = round(times.batch, 2)
            row[f"{name} latency ms"] = times.latency_ms
            row.update({f"{name} {part} ms": times.parts_ms.get(part, "") for part in STEP_PARTS})
        row["status"] = r.error or r.skipped or "ok"
        rows.append(row)
    return rows


def write_csv(results: list[Result], path: Path) -> None:
    rows = summary_rows(results)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _pairs(results: list[Result]) -> dict[tuple[str, int], dict[str, Result]]:
    """{(shared memory, concurrency): {target: result}}, transports in run order, then by
    concurrency."""
    transports = list(dict.fromkeys(r.run.shared_memory for r in results))
    pairs: dict[tuple[str, int], dict[str, Result]] = {}
    for r in sorted(
        results, key=lambda r: (transports.index(r.run.shared_memory), r.run.concurrency)
    ):
        pairs.setdefault((r.run.shared_memory, r.run.concurrency), {})[r.run.target] = r
    return pairs


def _cell(result: Result | None, metric: str, digits: int = 1) -> str:
    if result is None:
        return ""
    if result.skipped:
        return "skipped"
    if result.error:
        return "failed"
    return f"{result.metrics[metric]:.{digits}f}"


def comparison_table(results: list[Result]) -> list[str]:
    """Engine alone and ensemble side by side, per transport and concurrency; the JPEG ensemble
    in columns of its own when it was measured."""
    measured = {r.run.target for r in results}
    compared = [t for t in ENSEMBLE_TARGETS if t == "ensemble" or t in measured]
    rows = []
    for (shm, concurrency), by_target in _pairs(results).items():
        engine = by_target.get("engine")
        row = [shm, str(concurrency), _cell(engine, "throughput_infer_s")]
        tails = [_cell(engine, "p50_ms"), _cell(engine, "p99_ms")]
        for target in compared:
            ensemble = by_target.get(target)
            ratio = ""
            if engine and ensemble and engine.ok and ensemble.ok:
                value = ensemble.metrics["throughput_infer_s"] / engine.metrics["throughput_infer_s"]
                ratio = f"{value:.2f}" + ("" if value >= THROUGHPUT_BAR else " (below)")
            row += [_cell(ensemble, "throughput_infer_s"), ratio]
            tails += [_cell(ensemble, "p50_ms"), _cell(ensemble, "p99_ms")]
        rows.append(row + tails)
    names = [ENSEMBLE_TARGETS[t] for t in compared]
    header = ["shared memory", "concurrency", "engine infer/s"]
    for name in names:
        header += [f"{name} infer/s", f"{name}/engine"]
    header += ["engine p50 ms", "engine p99 ms"]
    for name in names:
        header += [f"{name} p50 ms", f"{name} p99 ms"]
    return markdown_table(header, rows)


def _times_row(label: str, times: ServerTimes) -> list[str]:
    parts = [f"{times.parts_ms[p]:.2f}" if p in times.parts_ms else "" for p in STEP_PARTS]
    return [label, f"{times.batch:.1f}", *parts, f"{times.latency_ms:.2f}"]


def breakdown_table(results: list[Result]) -> list[str]:
    """Server side per request: the engine alone, then each ensemble whole and step by step."""
    rows = []
    for (shm, concurrency), by_target in _pairs(results).items():
        engine = by_target.get("engine")
        entries = []
        if engine and engine.server:
            entries.append(_times_row("engine alone", engine.server))
        for target, name in ENSEMBLE_TARGETS.items():
            ensemble = by_target.get(target)
            if ensemble and ensemble.server:
                entries.append(_times_row(f"{name} (whole)", ensemble.server))
                entries += [_times_row(m, ensemble.steps[m]) for m in _ordered_steps(ensemble.steps)]
        rows += [[shm, str(concurrency), *entry] for entry in entries]
    return markdown_table(
        ["shared memory", "concurrency", "model", "batch", *(f"{p} ms" for p in STEP_PARTS),
         "latency ms"],
        rows,
    )  # fmt: skip


def write_markdown(results: list[Result], path: Path, header: dict[str, str]) -> str:
    """Writes summary.md and returns it."""
    lines = ["# perf_analyzer: the engine alone and the ensemble", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    bar = f"Throughput (infer/s), client latency; ensemble/engine below {THROUGHPUT_BAR} is marked:"
    lines += ["", bar, ""]
    lines += comparison_table(results)
    lines += ["", SERVER_SIDE, ""]
    lines += breakdown_table(results)
    again = [r for r in results if r.unsteady_ms]
    if again:
        lines += ["", "Measured again in windows twice as long (the first try did not steady):", ""]
        lines += [
            f"- {r.run.stem}: not steady in {r.unsteady_ms} ms windows; "
            + (f"then {r.error}" if r.error else f"steady in {2 * r.unsteady_ms} ms windows")
            for r in again
        ]
    unfinished = [r for r in results if not r.ok]
    if unfinished:
        lines += ["", "Not measured:", ""]
        lines += [f"- {r.run.stem}: {r.error or r.skipped}" for r in unfinished]
    lines += ["", "perf_analyzer commands:", ""]
    lines += [f"    {shlex.join(r.command)}" for r in results if not r.skipped]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
