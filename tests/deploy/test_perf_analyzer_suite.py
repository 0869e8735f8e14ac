"""benchmarks.perf_analyzer_suite: the requests it sends, short real perf_analyzer runs, and its
stdout parser."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.contract import (
    ENGINE,
    ENGINE_INPUT,
    ENSEMBLE,
    ENSEMBLE_INPUTS,
    IMAGE,
    POSTPROCESS,
)
from backends.preprocess import preprocess_frame
from benchmarks.perf_analyzer_suite import (
    FRAME_SHAPE,
    Run,
    input_arguments,
    main,
    parse_composing_models,
    perf_analyzer_command,
)
from tools.make_sample_video import render_frames

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


def test_the_ensemble_gets_one_frame_as_its_batch_of_one_input(tmp_path):
    arguments = input_arguments(tmp_path, 312)
    data_dir = tmp_path / "ensemble"
    assert arguments["ensemble"] == [
        "--input-data", str(data_dir),
        "--shape", f"{IMAGE}:1,{FRAME_SHAPE[0]},{FRAME_SHAPE[1]},3",
    ]
    (spec,) = ENSEMBLE_INPUTS
    shape = [int(v) for v in arguments["ensemble"][-1].partition(":")[2].split(",")]
    assert spec.name == IMAGE and len(shape) == len(spec.dims)
    assert all(d == -1 or d == v for d, v in zip(spec.dims, shape, strict=True))
    frame = next(render_frames(1, FRAME_SHAPE[1], FRAME_SHAPE[0]))
    assert (data_dir / IMAGE).read_bytes() == frame.tobytes()
    assert [p.name for p in data_dir.iterdir()] == [IMAGE]


def test_the_engine_gets_that_frame_preprocessed_per_item(tmp_path):
    arguments = input_arguments(tmp_path, 312)
    # A batching model with fixed dims: no --shape, perf_analyzer adds the batch axis.
    assert arguments["engine"] == ["--input-data", str(tmp_path / "engine")]
    (data,) = (tmp_path / "engine").iterdir()
    assert data.name == ENGINE_INPUT
    sent = np.frombuffer(data.read_bytes(), np.float32)
    assert sent.size == 3 * 312 * 312
    frame = next(render_frames(1, FRAME_SHAPE[1], FRAME_SHAPE[0]))
    expected = preprocess_frame(torch.from_numpy(frame), 312)[0].numpy()
    np.testing.assert_array_equal(sent.reshape(3, 312, 312), expected)


@pytest.mark.parametrize("shared_memory", ["none", "system"])
def test_command_sizes_output_regions_only_for_the_ensemble_in_shared_memory(
    tmp_path, shared_memory
):
    args = argparse.Namespace(measurement_interval=1500, max_trials=3, stability_percentage=50)
    inputs = input_arguments(tmp_path, 312)
    commands = {
        target: perf_analyzer_command(
            "perf_analyzer", "localhost:1", Run(target, shared_memory, 2), inputs[target],
            Path("out.csv"), args,
        )
        for target in ("ensemble", "engine")
    }
    assert commands["ensemble"][:3] == ["perf_analyzer", "-m", ENSEMBLE]
    assert commands["engine"][:3] == ["perf_analyzer", "-m", ENGINE]
    for target, command in commands.items():
        assert command[command.index("--shared-memory") + 1] == shared_memory
        assert command[command.index("--concurrency-range") + 1] == "2"
        start = command.index("--input-data")
        assert command[start : start + len(inputs[target])] == inputs[target]
    sized = ["--output-shared-memory-size" in command for command in commands.values()]
    assert sized == [shared_memory == "system", False]


@pytest.mark.integration
@pytest.mark.slow  # real perf_analyzer runs of the whole ensemble against a real server
def test_ensemble_run_against_the_real_server(triton_server, tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--url", triton_server.grpc_url,
            "--out", str(out),
            "--targets", "ensemble",
            "--shared-memory", "none,system",
            "--concurrency", "1",
            "--measurement-interval", "1500",
            "--max-trials", "3",
            "--stability-percentage", "1000",
        ]
    )
    assert code == 0, (out / "summary.md").read_text()
    for shm in ("none", "system"):
        log = (out / f"ensemble-{shm}-c1.log").read_text()
        assert f"--shape {IMAGE}:1,{FRAME_SHAPE[0]},{FRAME_SHAPE[1]},3" in log
        with (out / f"ensemble-{shm}-c1.csv").open(newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert float(row["Inferences/Second"]) > 0


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
            "--stability-percentage", "1000",
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
