"""benchmarks.perf_analyzer_suite: a short real perf_analyzer run, and its stdout parser."""

from __future__ import annotations

import csv

import pytest

from backends.contract import ENGINE, POSTPROCESS
from benchmarks.perf_analyzer_suite import main, parse_composing_models

# The end of a real perf_analyzer 2.51 report on the ensemble (CPU host, concurrency 1).
ENSEMBLE_STDOUT = """\
  Server: 
    Inference count: 21
    Execution count: 21
    Successful request count: 21
    Avg request latency: 330197 usec (overhead 0 usec + queue 2722 usec + compute 327487 usec)

  Composing models: 
  rfdetr_seg_engine, version: 1
      Inference count: 21
      Execution count: 21
      Successful request count: 21
      Avg request latency: 270953 usec (overhead 6 usec + queue 2199 usec + compute input 181 usec + compute infer 267939 usec + compute output 627 usec)

  rfdetr_seg_postprocess, version: 1
      Inference count: 21
      Execution count: 21
      Successful request count: 21
      Avg request latency: 47083 usec (overhead 5 usec + queue 70 usec + compute input 280 usec + compute infer 46304 usec + compute output 424 usec)

Inferences/Second vs. Client Average Batch Latency
Concurrency: 1, throughput: 2.91589 infer/sec, latency 330747 usec
"""  # noqa: E501, W291 - perf_analyzer's own lines and trailing spaces


def test_parses_the_composing_models_breakdown():
    steps = parse_composing_models(ENSEMBLE_STDOUT)
    assert set(steps) == {ENGINE, POSTPROCESS}
    assert steps[ENGINE] == {
        "latency": 270.953,
        "overhead": 0.006,
        "queue": 2.199,
        "compute input": 0.181,
        "compute infer": 267.939,
        "compute output": 0.627,
    }
    assert steps[POSTPROCESS]["compute infer"] == 46.304


def test_no_composing_models_for_a_plain_model():
    assert parse_composing_models(ENSEMBLE_STDOUT.split("  Composing models:")[0]) == {}


@pytest.mark.integration
@pytest.mark.slow  # the slowest test here: real perf_analyzer runs against a real server
def test_engine_run_against_the_real_server(triton_server, tmp_path):
    out = tmp_path / "results"
    # Short windows with a loose stability bound: this proves the path, it measures nothing.
    code = main(
        [
            "--url", triton_server.grpc_url,
            "--out", str(out),
            "--targets", "engine",
            "--shared-memory", "none,system",
            "--concurrency", "1",
            "--measurement-interval", "1500",
            "--max-trials", "3",
            "--stability-percentage", "100",
        ]
    )
    assert code == 0, (out / "summary.md").read_text()
    for shm in ("none", "system"):
        with (out / f"engine-{shm}-c1.csv").open(newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert float(row["Inferences/Second"]) > 0
        assert "--shared-memory " + shm in (out / f"engine-{shm}-c1.log").read_text()
    with (out / "summary.csv").open(newline="") as f:
        summary = list(csv.DictReader(f))
    runs = [(r["model"], r["shared_memory"]) for r in summary]
    assert runs == [(ENGINE, "none"), (ENGINE, "system")]
    assert all(float(r["throughput_infer_s"]) > 0 and float(r["p95_ms"]) > 0 for r in summary)
    report = (out / "summary.md").read_text()
    assert "device: GPU:" in report and "perf_analyzer -m rfdetr_seg_engine" in report
