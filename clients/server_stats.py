"""Per-stage server statistics of one run: Triton's statistics API read before and after.

The counters are cumulative since the server started, so a run's numbers are the difference of
two readings. Execution count below inference count means the stage batched requests.
RunStats takes both readings best effort: statistics never stop a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeVar

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from backends import contract

STAGES = (contract.ENSEMBLE, contract.PREPROCESS, contract.ENGINE, contract.POSTPROCESS)
JPEG_STAGES = (contract.JPEG_ENSEMBLE, contract.PREPROCESS_JPEG, contract.ENGINE, contract.POSTPROCESS)
_DURATIONS = ("queue", "compute_input", "compute_infer", "compute_output")
T = TypeVar("T")


def stages_of(ensemble: str) -> tuple[str, ...]:
    """The ensemble and its steps, in order: what a run's statistics cover."""
    return JPEG_STAGES if ensemble == contract.JPEG_ENSEMBLE else STAGES


@dataclass(frozen=True)
class Counters:
    """One model's cumulative counters (all versions summed)."""

    inference_count: int = 0
    execution_count: int = 0
    requests: int = 0  # successful requests
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class StageStats:
    """One model's share of a run; times are averages per successful request, in ms."""

    model: str
    inference_count: int
    execution_count: int
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float

    @classmethod
    def from_counters(cls, model: str, delta: Counters) -> StageStats:
        def per_request_ms(ns: int) -> float:
            return ns / delta.requests / 1e6 if delta.requests else 0.0

        return cls(
            model,
            delta.inference_count,
            delta.execution_count,
            *(per_request_ms(getattr(delta, f"{name}_ns")) for name in _DURATIONS),
        )


def read_counters(
    client: grpcclient.InferenceServerClient,
    models: tuple[str, ...] = STAGES,
    timeout_s: float = 5.0,
) -> dict[str, Counters]:
    """Each model's cumulative counters now; each call waits up to timeout_s (a hung server)."""
    counters = {}
    for model in models:
        total = Counters()
        response = client.get_inference_statistics(model, client_timeout=timeout_s)
        for version in response.model_stats:
            stats = version.inference_stats
            total += Counters(
                version.inference_count,
                version.execution_count,
                stats.success.count,
                *(getattr(stats, name).ns for name in _DURATIONS),
            )
        counters[model] = total
    return counters


def read_settled_counters(
    client: grpcclient.InferenceServerClient,
    models: tuple[str, ...] = STAGES,
    quiet_s: float = 0.05,
    timeout_s: float = 1.0,
) -> dict[str, Counters]:
    """read_counters once two readings quiet_s apart agree (at most timeout_s): a run's "before"
    reading taken while an earlier request's counters are still landing (the ensemble's come
    after its steps') would count that request in the run."""
    deadline = time.monotonic() + timeout_s
    counters = read_counters(client, models)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = read_counters(client, models)
        if again == counters:
            break
        counters = again
    return counters


def stats_since(
    client: grpcclient.InferenceServerClient,
    before: dict[str, Counters],
    served: int = 0,
    timeout_s: float = 2.0,
) -> list[StageStats]:
    """Each model's statistics since the `before` reading (from read_counters), stage order.

    The server updates a model's counters just after it sends the response, so a reading taken
    right after the last response can miss it, and a composing model's update can come after the
    ensemble's: with `served` (requests that succeeded end to end, so through every stage), wait
    up to timeout_s for every model to count them all.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        after = read_counters(client, tuple(before))
        counted = all((after[model] - before[model]).requests >= served for model in before)
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return [StageStats.from_counters(model, after[model] - before[model]) for model in before]


class RunStats:
    """One run's per-stage statistics, best effort: a reading that fails (the server went away)
    leaves them out, and `missing` says why; None once they were read."""

    def __init__(self, client: grpcclient.InferenceServerClient, models: tuple[str, ...] = STAGES):
        self._client = client
        self.missing: str | None = None
        self._before = self._read("before", read_settled_counters, client, models)

    def since_start(self, served: int, server_outages: int) -> list[StageStats]:
        """The statistics since this object was made (stats_since); [] when they are missing."""
        if server_outages:
            # A restarted server counts from zero: a difference with the old counters means nothing.
            self.missing = "the server went away during the run: its counters no longer cover it"
            return []
        if self._before is None:
            return []
        return self._read("after", stats_since, self._client, self._before, served) or []

    def _read(self, when: str, read: Callable[..., T], *args: object) -> T | None:
        try:
            return read(*args)
        except InferenceServerException as error:
            self.missing = f"they could not be read {when} the run: {error}"
            return None


def format_table(stats: list[StageStats]) -> str:
    """A small text table: one row per model, times in ms per request."""
    header = ("model", "inferences", "executions", "queue ms", "input ms", "infer ms", "output ms")
    rows = [
        (
            s.model,
            str(s.inference_count),
            str(s.execution_count),
            *(
                f"{ms:.2f}"
                for ms in (s.queue_ms, s.compute_input_ms, s.compute_infer_ms, s.compute_output_ms)
            ),
        )
        for s in stats
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (header, *rows)
    ]
    return "\n".join(lines)
