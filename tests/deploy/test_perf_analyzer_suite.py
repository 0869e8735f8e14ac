"""benchmarks.perf_analyzer_suite (with _runs and _report): the requests it sends, the order
and time budget of its runs, perf_analyzer's output parsed, the summary, argument errors, and
short real perf_analyzer runs."""

from __future__ import annotations

import csv
import math
import tarfile
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
    PREPROCESS,
)
from backends.preprocess import preprocess_frame
from benchmarks import perf_analyzer_suite
from benchmarks.perf_analyzer_report import (
    Result,
    Run,
    breakdown_table,
    comparison_table,
    parse_composing_models,
    parse_csv,
    parse_server,
    summary_rows,
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
    run_within_budget,
    spread,
)
from benchmarks.perf_analyzer_suite import (
    input_arguments,
    main,
    output_region_bytes,
    parse_args,
)
from tools.make_sample_video import render_frames
from tools.tritonserver import REPO_ROOT

# Real perf_analyzer 2.51 output, from `python -m benchmarks.perf_analyzer_suite` on the cpu
# target (2-core CPU host, busy): the ensemble and the engine alone, system shm, concurrency 2.
ENSEMBLE_STDOUT = """\
Request concurrency: 2
  Client: 
    Request count: 5
    Throughput: 0.925209 infer/sec
    Avg latency: 2512819 usec (standard deviation 577675 usec)
    p50 latency: 2365016 usec
    p90 latency: 3444406 usec
    p95 latency: 3444406 usec
    p99 latency: 3444406 usec
    Avg gRPC time: 2512773 usec ((un)marshal request/response 24 usec + response wait 2512749 usec)
  Server: 
    Inference count: 5
    Execution count: 5
    Successful request count: 5
    Avg request latency: 2507635 usec (overhead 0 usec + queue 484060 usec + compute 2152835 usec)

  Composing models: 
  rfdetr_seg_engine, version: 1
      Inference count: 4
      Execution count: 4
      Successful request count: 4
      Avg request latency: 1726913 usec (overhead 5 usec + queue 483430 usec + compute input 1240 usec + compute infer 1241641 usec + compute output 596 usec)

  rfdetr_seg_postprocess, version: 1
      Inference count: 5
      Execution count: 5
      Successful request count: 5
      Avg request latency: 782500 usec (overhead 7 usec + queue 208 usec + compute input 188 usec + compute infer 780882 usec + compute output 1213 usec)

  rfdetr_seg_preprocess, version: 1
      Inference count: 5
      Execution count: 5
      Successful request count: 5
      Avg request latency: 127498 usec (overhead 4 usec + queue 422 usec + compute input 140 usec + compute infer 126666 usec + compute output 265 usec)

Inferences/Second vs. Client Average Batch Latency
Concurrency: 2, throughput: 0.925209 infer/sec, latency 2512819 usec
"""
ENGINE_STDOUT = """\
Request concurrency: 2
  Client: 
    Request count: 6
    Throughput: 1.10717 infer/sec
    Avg latency: 1343587 usec (standard deviation 362974 usec)
    p50 latency: 1551279 usec
    p90 latency: 1603597 usec
    p95 latency: 1603597 usec
    p99 latency: 1603597 usec
    Avg gRPC time: 1343564 usec ((un)marshal request/response 10 usec + response wait 1343554 usec)
  Server: 
    Inference count: 6
    Execution count: 3
    Successful request count: 6
    Avg request latency: 1341233 usec (overhead 9 usec + queue 2071 usec + compute input 208 usec + compute infer 1338083 usec + compute output 862 usec)

Inferences/Second vs. Client Average Batch Latency
Concurrency: 2, throughput: 1.10717 infer/sec, latency 1343587 usec
"""
# Its -f CSV for the engine run above.
ENGINE_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait
2,1.10717,7,2351,2071,208,1338083,862,3,1551279,1603597,1603597,1603597,1343587,10,1343554
"""
WINDOWS = Windows(interval_ms=1500, max_trials=5, stability_percentage=25)


# perf_analyzer's output


def test_parses_the_composing_models_breakdown():
    steps = parse_composing_models(ENSEMBLE_STDOUT)
    assert set(steps) == {PREPROCESS, ENGINE, POSTPROCESS}
    engine = steps[ENGINE]
    assert (engine.inferences, engine.executions, engine.latency_ms) == (4, 4, 1726.913)
    assert engine.parts_ms == {
        "overhead": 0.005,
        "queue": 483.43,
        "compute input": 1.24,
        "compute infer": 1241.641,
        "compute output": 0.596,
    }
    assert steps[POSTPROCESS].parts_ms["compute infer"] == 780.882
    assert steps[PREPROCESS].batch == 1.0


def test_parses_the_server_block_of_the_model_driven():
    ensemble = parse_server(ENSEMBLE_STDOUT)
    assert ensemble.latency_ms == 2507.635
    assert ensemble.parts_ms == {"overhead": 0.0, "queue": 484.06, "compute": 2152.835}
    engine = parse_server(ENGINE_STDOUT)
    assert (engine.inferences, engine.executions, engine.batch) == (6, 3, 2.0)
    assert engine.parts_ms["compute infer"] == 1338.083


def test_a_plain_model_or_a_failed_run_has_no_breakdown():
    assert parse_composing_models(ENGINE_STDOUT) == {}
    failed = "Request concurrency: 2\nFailed to obtain stable measurement.\n"
    assert parse_server(failed) is None and parse_composing_models(failed) == {}


def test_parses_the_csv_row_in_ms(tmp_path):
    path = tmp_path / "engine.csv"
    path.write_text(ENGINE_CSV)
    assert parse_csv(path) == {
        "throughput_infer_s": 1.10717,
        "p50_ms": 1551.279,
        "p95_ms": 1603.597,
        "p99_ms": 1603.597,
        "avg_ms": 1343.587,
    }
    path.write_text(ENGINE_CSV + ENGINE_CSV.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="expected one concurrency row, found 2"):
        parse_csv(path)


# The summary


def measured(target: str, shm: str, concurrency: int, throughput: float, stdout: str) -> Result:
    run = Run(target, shm, concurrency)
    metrics = {
        "throughput_infer_s": throughput,
        "p50_ms": 10.0 * concurrency,
        "p99_ms": 30.0 * concurrency,
    }
    return Result(
        run,
        ["perf_analyzer", "-m", run.model],
        metrics,
        parse_server(stdout),
        parse_composing_models(stdout),
    )


@pytest.fixture
def results() -> list[Result]:
    return [
        measured("engine", "system", 1, 100.0, ENGINE_STDOUT),
        measured("ensemble", "system", 1, 95.0, ENSEMBLE_STDOUT),
        measured("engine", "system", 8, 400.0, ENGINE_STDOUT),
        measured("ensemble", "system", 8, 200.0, ENSEMBLE_STDOUT),
        measured("engine", "none", 1, 50.0, ENGINE_STDOUT),
        Result(
            Run("ensemble", "none", 1), ["perf_analyzer"], error="perf_analyzer exited 2: unstable"
        ),
        Result(Run("engine", "none", 8), [], skipped="over the budget"),
        Result(Run("ensemble", "none", 8), [], skipped="over the budget"),
    ]


def test_comparison_puts_engine_and_ensemble_side_by_side(results):
    header, _, *rows = comparison_table(results)
    assert header.split(" | ")[2:5] == ["engine infer/s", "ensemble infer/s", "ensemble/engine"]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells == [
        ["system", "1", "100.0", "95.0", "0.95", "10.0", "30.0", "10.0", "30.0"],
        ["system", "8", "400.0", "200.0", "0.50 (below)", "80.0", "240.0", "80.0", "240.0"],
        ["none", "1", "50.0", "failed", "", "10.0", "30.0", "failed", "failed"],
        ["none", "8", "skipped", "skipped", "", "skipped", "skipped", "skipped", "skipped"],
    ]


def test_breakdown_lists_the_engine_alone_then_the_ensemble_step_by_step(results):
    _, _, *rows = breakdown_table(results)
    first = [[c.strip() for c in row.strip("|").split("|")][:4] for row in rows[:5]]
    assert first == [
        ["system", "1", "engine alone", "2.0"],
        ["system", "1", "ensemble (whole)", "1.0"],
        ["system", "1", PREPROCESS, "1.0"],
        ["system", "1", ENGINE, "1.0"],
        ["system", "1", POSTPROCESS, "1.0"],
    ]
    engine_in_ensemble = [c.strip() for c in rows[3].strip("|").split("|")]
    assert engine_in_ensemble[4:] == ["483.43", "1.24", "1241.64", "0.60", "1726.91"]


def test_csv_rows_carry_the_ratio_the_steps_and_the_status(results):
    rows = summary_rows(results)
    statuses = [r["status"] for r in rows]
    assert statuses == ["ok"] * 5 + ["perf_analyzer exited 2: unstable"] + ["over the budget"] * 2
    ensemble = rows[3]
    assert ensemble["ensemble_over_engine"] == 0.5
    assert ensemble[f"{ENGINE} queue ms"] == 483.43 and ensemble[f"{ENGINE} batch"] == 1.0
    assert rows[0]["server batch"] == 2.0 and "ensemble_over_engine" not in rows[0]


def test_markdown_says_what_was_not_measured_and_how_each_run_ran(results, tmp_path):
    text = write_markdown(results, tmp_path / "summary.md", {"device": "a test"})
    assert text == (tmp_path / "summary.md").read_text()
    assert "- device: a test" in text
    assert "- ensemble-none-c1: perf_analyzer exited 2: unstable" in text
    assert "- engine-none-c8: over the budget" in text
    assert text.count("    perf_analyzer") == 6  # every run that ran, no skipped one


# The runs and their order


def test_spread_orders_extremes_first_then_midpoints():
    assert spread([1, 2, 4, 8, 16, 32]) == [1, 32, 4, 2, 8, 16]
    assert spread([32, 1, 1]) == [1, 32]
    assert spread([4]) == [4]
    values = list(range(1, 12))
    assert sorted(spread(values)) == values


def test_plan_pairs_the_engine_and_the_ensemble_per_transport():
    runs = plan_runs(["ensemble", "engine"], ["system", "none", "system"], [8, 1])
    assert [r.stem for r in runs] == [
        "engine-system-c1", "ensemble-system-c1", "engine-none-c1", "ensemble-none-c1",
        "engine-system-c8", "ensemble-system-c8", "engine-none-c8", "ensemble-none-c8",
    ]  # fmt: skip
    assert [r.stem for r in plan_runs(["ensemble"], ["cuda"], [2])] == ["ensemble-cuda-c2"]


class FakeClock:
    """A fake clock for the budget tests: time moves only when a fake run says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_skips_the_runs_that_would_not_finish(capsys):
    clock, timeouts = FakeClock(), []

    def fake_run(run: Run, windows: Windows, timeout_s: float) -> Result:  # takes 12 s of fake time
        timeouts.append(timeout_s)
        clock.now += 12.0
        return Result(run, ["fake"], {"throughput_infer_s": 1.0})

    runs = plan_runs(["engine", "ensemble"], ["none"], [1, 2, 4])
    # WINDOWS: a run should take at most 5 x 1.5 s + 5 s = 12.5 s, so may take 55 s.
    results = run_within_budget(runs, fake_run, deadline=40.0, windows=WINDOWS, clock=clock)
    assert [r.ok for r in results] == [True, True, True, False, False, False]
    assert timeouts == [40.0, 28.0, 16.0]
    assert results[3].skipped == "over the budget: 4 s left, a run takes up to 12 s"
    assert capsys.readouterr().out.splitlines()[-1] == "[3/6] engine-none-c4: ok in 12.0 s"


def test_without_a_budget_every_run_runs_with_its_time_limit():
    clock, timeouts = FakeClock(), []

    def fake_run(run: Run, windows: Windows, timeout_s: float) -> Result:
        timeouts.append(timeout_s)
        clock.now += 100.0
        return Result(run, ["fake"], error="stopped")

    results = run_within_budget(
        plan_runs(["engine"], ["none"], [1, 2]), fake_run, None, WINDOWS, clock
    )
    assert [r.error for r in results] == ["stopped", "stopped"]
    assert timeouts == [2 * WINDOWS.longest_run_s + 30] * 2


UNSTEADY_ERROR = (
    "perf_analyzer exited 2: Failed to obtain stable measurement within 5 measurement windows "
    "for concurrency 16. Please try to increase the --measurement-interval."
)


def unsteady_in(short_ms: int, clock: FakeClock, calls: list):
    """A fake run that takes its longest time and does not steady in windows of short_ms."""

    def fake_run(run: Run, windows: Windows, timeout_s: float) -> Result:
        calls.append((run.stem, windows.interval_ms, timeout_s))
        clock.now += windows.longest_run_s
        if windows.interval_ms <= short_ms:
            return Result(run, ["fake"], error=UNSTEADY_ERROR)
        metrics = {"throughput_infer_s": 1.0, "p50_ms": 2.0, "p99_ms": 3.0}
        return Result(run, ["fake", str(windows.interval_ms)], metrics)

    return fake_run


def test_a_run_that_does_not_steady_is_measured_again_in_windows_twice_as_long(capsys, tmp_path):
    clock, calls = FakeClock(), []
    runs = plan_runs(["engine"], ["system"], [16])
    results = run_within_budget(runs, unsteady_in(1500, clock, calls), None, WINDOWS, clock)
    longer = WINDOWS.longer()
    assert calls == [
        ("engine-system-c16", 1500, 2 * WINDOWS.longest_run_s + 30),
        ("engine-system-c16", 3000, 2 * longer.longest_run_s + 30),
    ]
    assert results[0].ok and results[0].unsteady_ms == 1500 and results[0].command[-1] == "3000"
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["[1/1] engine-system-c16: not steady in 12.5 s; again in 3000 ms windows",
                       "[1/1] engine-system-c16: ok in 32.5 s"]  # fmt: skip
    text = write_markdown(results, tmp_path / "summary.md", {})
    assert "- engine-system-c16: not steady in 1500 ms windows; steady in 3000 ms windows" in text


def test_a_run_still_unsteady_in_longer_windows_fails_saying_both(tmp_path):
    clock, calls = FakeClock(), []
    runs = plan_runs(["engine"], ["none"], [16])
    results = run_within_budget(runs, unsteady_in(3000, clock, calls), None, WINDOWS, clock)
    assert [c[1] for c in calls] == [1500, 3000]  # one more try, not more
    assert results[0].error == UNSTEADY_ERROR and results[0].unsteady_ms == 1500
    text = write_markdown(results, tmp_path / "summary.md", {})
    assert f"- engine-none-c16: not steady in 1500 ms windows; then {UNSTEADY_ERROR}" in text


def test_no_second_try_when_the_budget_cannot_hold_it():
    clock, calls = FakeClock(), []
    runs = plan_runs(["engine"], ["none"], [16, 32])
    # The first try ends at 12.5 s; windows twice as long need up to 20 s, 15 are left.
    results = run_within_budget(runs, unsteady_in(1500, clock, calls), 27.5, WINDOWS, clock)
    assert [c[1] for c in calls] == [1500, 1500]
    assert results[0].error == UNSTEADY_ERROR and results[0].unsteady_ms == 0
    assert not results[1].ok


def test_a_failure_other_than_unsteady_is_not_run_again():
    clock, calls = FakeClock(), []

    def refused(run: Run, windows: Windows, timeout_s: float) -> Result:
        calls.append(windows.interval_ms)
        return Result(run, ["fake"], error="perf_analyzer exited 99: model not ready")

    run_within_budget(plan_runs(["engine"], ["none"], [1]), refused, None, WINDOWS, clock)
    assert calls == [1500]


# The requests


def test_the_ensemble_gets_one_frame_as_its_batch_of_one_input(tmp_path):
    arguments = input_arguments(tmp_path, 312, (160, 90))
    data_dir = tmp_path / "ensemble"
    assert arguments["ensemble"] == [
        "--input-data",
        str(data_dir),
        "--shape",
        f"{IMAGE}:1,90,160,3",
    ]
    (spec,) = ENSEMBLE_INPUTS
    shape = [int(v) for v in arguments["ensemble"][-1].partition(":")[2].split(",")]
    assert spec.name == IMAGE and len(shape) == len(spec.dims)
    assert all(d == -1 or d == v for d, v in zip(spec.dims, shape, strict=True))
    frame = next(render_frames(1, 160, 90))
    assert (data_dir / IMAGE).read_bytes() == frame.tobytes()
    assert [p.name for p in data_dir.iterdir()] == [IMAGE]


def test_the_engine_gets_that_frame_preprocessed_per_item(tmp_path):
    arguments = input_arguments(tmp_path, 312, (160, 90))
    # A batching model with fixed dims: no --shape, perf_analyzer adds the batch axis.
    assert arguments["engine"] == ["--input-data", str(tmp_path / "engine")]
    (data,) = (tmp_path / "engine").iterdir()
    assert data.name == ENGINE_INPUT
    sent = np.frombuffer(data.read_bytes(), np.float32)
    frame = next(render_frames(1, 160, 90))
    expected = preprocess_frame(torch.from_numpy(frame), 312)[0].numpy()
    np.testing.assert_array_equal(sent.reshape(3, 312, 312), expected)


@pytest.mark.parametrize(
    "largest, region",
    [(0, 1 << 20), (153_246, 1 << 20), (1 << 20, 2 << 20), (1_500_000, 3 << 20)],
)
def test_output_regions_hold_twice_the_largest_output_in_whole_mib(largest, region):
    assert output_region_bytes(largest) == region


@pytest.mark.parametrize("shared_memory", ["none", "system", "cuda"])
def test_command_sizes_output_regions_only_for_the_ensemble_in_shared_memory(
    tmp_path, shared_memory
):
    inputs = input_arguments(tmp_path, 312, (160, 90))
    commands = {
        target: perf_analyzer_command(
            "perf_analyzer", "localhost:1", Run(target, shared_memory, 32), inputs[target],
            Path("out.csv"), WINDOWS, 3 << 20,
        )
        for target in ("ensemble", "engine")
    }  # fmt: skip
    assert commands["ensemble"][:3] == ["perf_analyzer", "-m", ENSEMBLE]
    assert commands["engine"][:3] == ["perf_analyzer", "-m", ENGINE]
    for target, command in commands.items():
        assert command[command.index("--shared-memory") + 1] == shared_memory
        # An explicit end: one thread per request in flight, past --max-threads' 16.
        assert command[command.index("--concurrency-range") + 1] == "32:32"
        assert command[command.index("--measurement-interval") + 1] == "1500"
        assert command[command.index("--max-trials") + 1] == "5"
        start = command.index("--input-data")
        assert command[start : start + len(inputs[target])] == inputs[target]
    ensemble = commands["ensemble"]
    if shared_memory == "none":
        assert "--output-shared-memory-size" not in ensemble
    else:
        assert ensemble[ensemble.index("--output-shared-memory-size") + 1] == str(3 << 20)
    assert "--output-shared-memory-size" not in commands["engine"]


# perf_analyzer that fails (fakes, shell scripts standing in for the binary)


def fake_perf_analyzer(tmp_path: Path, body: str) -> str:
    """A fake perf_analyzer: a shell script with the given body."""
    path = tmp_path / "fake_perf_analyzer"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_binary_that_cannot_start_is_refused(tmp_path):
    binary = fake_perf_analyzer(
        tmp_path, 'echo "error while loading shared libraries: libb64.so.0d" >&2; exit 127'
    )
    with pytest.raises(PerfAnalyzerMissing, match=r"does not start \(exit 127\).*libb64.so.0d"):
        check_perf_analyzer(binary)


def test_an_unstable_run_is_a_failed_result_with_perf_analyzers_reason(tmp_path):
    binary = fake_perf_analyzer(
        tmp_path,
        "echo 'Request concurrency: 2'; echo 'WARNING: Pass contained only one request'; "
        "echo 'Failed to obtain stable measurement within 5 measurement windows' >&2; exit 2",
    )
    result = execute([binary], Run("engine", "none", 2), tmp_path, timeout_s=30)
    assert result.error == (
        "perf_analyzer exited 2: Request concurrency: 2 | "
        "Failed to obtain stable measurement within 5 measurement windows"
    )
    assert "Failed to obtain" in (tmp_path / "engine-none-c2.log").read_text()


def test_a_run_past_its_time_limit_is_stopped(tmp_path):
    binary = fake_perf_analyzer(tmp_path, "echo 'Request concurrency: 1'; exec sleep 30")
    result = execute([binary], Run("ensemble", "system", 1), tmp_path, timeout_s=1)
    assert result.error == "stopped after 1 s, its time limit" and not result.ok
    assert (tmp_path / "ensemble-system-c1.log").read_text().startswith(f"$ {binary}\n")


# Arguments


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--frame-size", "1920by1080"], "expected WIDTHxHEIGHT in pixels"),
        (["--frame-size", "0x1080"], "expected WIDTHxHEIGHT in pixels"),
        (["--concurrency", "1,0"], "expected comma-separated int values >= 1, got '1,0'"),
        (["--concurrency", "two"], "expected comma-separated int values >= 1"),
        (
            ["--shared-memory", "system,gpu"],
            "expected comma-separated values from none, system, cuda",
        ),
        (["--targets", "engine,postprocess"], "values from engine, ensemble"),
        (["--budget-s", "0"], "expected a number > 0, got '0'"),
        (["--budget-s", "nan"], "expected a number > 0, got 'nan'"),
        (["--measurement-interval", "-1500"], "expected a number > 0"),
        (["--engine", "torch"], "--engine and --onnx need --target"),
        (
            ["--target", "cpu", "--engine", "tensorrt"],
            "target cpu serves the engines ['onnx', 'torch'], not 'tensorrt'",
        ),
        (["--target", "gpu", "--onnx", "missing.onnx"], "ONNX file not found: missing.onnx"),
        (["--target", "gpu", "--url", "localhost:8001"], "not allowed with argument"),
        (["--repository", "no/such/repository"], "model repository not found: no/such/repository"),
        (
            ["--repository", str(REPO_ROOT / "benchmarks")],
            f"not a repository this project built: cannot read {REPO_ROOT}/benchmarks/rfdetr_seg_preprocess",
        ),
    ],
)
def test_bad_arguments_are_refused_with_a_message(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--out", str(tmp_path), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA device is here: cuda shared memory is allowed"
)
def test_cuda_shared_memory_needs_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--out", str(tmp_path), "--url", "x:1", "--shared-memory", "none,cuda"])
    assert "--shared-memory cuda needs a CUDA device" in capsys.readouterr().err


def test_the_gpu_run_parses():
    args = parse_args(
        ["--target", "gpu", "--frame-size", "1920x1080", "--concurrency", "1,2,4,8,16,32",
         "--shared-memory", "none,system", "--measurement-interval", "1500", "--max-trials", "5",
         "--budget-s", "420", "--tar-logs", "--out", "out"]
    )  # fmt: skip
    assert (args.frame_size, args.concurrency, args.budget_s) == (
        (1920, 1080),
        [1, 2, 4, 8, 16, 32],
        420.0,
    )
    assert args.engine is None and args.tar_logs


# Real perf_analyzer runs


@pytest.mark.integration  # the tritonclient 2.51 wheel's binary with the server's libraries
def test_the_wheels_perf_analyzer_starts():
    assert check_perf_analyzer(find_perf_analyzer()).startswith("Perf Analyzer Version 2.51")


SHORT = ["--measurement-interval", "1500", "--max-trials", "3", "--stability-percentage", "1000"]


@pytest.mark.integration
@pytest.mark.slow  # real perf_analyzer runs of the engine and the whole ensemble, a real server
def test_both_targets_against_the_real_server_leave_three_files(triton_server, tmp_path):
    # Short windows with a loose stability bound: this proves the path, it measures nothing.
    out = tmp_path / "results"
    code = main(
        ["--url", triton_server.grpc_url, "--out", str(out), "--shared-memory", "system",
         "--concurrency", "1", "--frame-size", "320x240", "--tar-logs", *SHORT]
    )  # fmt: skip
    report = (out / "summary.md").read_text()
    assert code == 0, report
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.csv", "summary.md"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
        log = tar.extractfile("logs/ensemble-system-c1.log").read().decode()
    assert {
        f"logs/{t}-system-c1.{ext}" for t in ("engine", "ensemble") for ext in ("csv", "log")
    } <= names
    assert f"--shape {IMAGE}:1,240,320,3" in log and "--output-shared-memory-size 1048576" in log
    with (out / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["status"]) for r in rows] == [(ENGINE, "ok"), (ENSEMBLE, "ok")]
    assert all(float(r["throughput_infer_s"]) > 0 and float(r["p99_ms"]) > 0 for r in rows)
    # The ensemble's steps, parsed from the real output.
    ensemble = rows[1]
    for step in (PREPROCESS, ENGINE, POSTPROCESS):
        assert float(ensemble[f"{step} compute infer ms"]) > 0
    ratio = float(ensemble["throughput_infer_s"]) / float(rows[0]["throughput_infer_s"])
    assert math.isclose(float(ensemble["ensemble_over_engine"]), ratio, rel_tol=1e-2)
    assert "device: GPU:" in report and "| system | 1 |" in report


@pytest.mark.integration
@pytest.mark.slow  # builds the cpu target's repository, starts its own server, runs perf_analyzer
def test_the_suite_builds_and_serves_a_target(nano_export, tmp_path, monkeypatch):
    monkeypatch.setattr(perf_analyzer_suite, "BUILT_REPOSITORY", tmp_path / "repository")
    out = tmp_path / "results"
    code = main(
        ["--target", "cpu", "--out", str(out), "--targets", "engine", "--shared-memory", "none",
         "--concurrency", "1", *SHORT]
    )  # fmt: skip
    report = (out / "summary.md").read_text()
    assert code == 0, report
    assert "target cpu, engine onnx (rfdetr-seg-nano.onnx, score threshold 0.05)" in report
    assert (tmp_path / "repository" / ENSEMBLE / "config.pbtxt").is_file()
    assert (out / "tritonserver.log").is_file() and (out / "engine-none-c1.csv").is_file()


@pytest.mark.integration
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA shared memory needs a CUDA device")
def test_cuda_shared_memory_against_the_real_server(triton_server, tmp_path):
    out = tmp_path / "results"
    code = main(
        ["--url", triton_server.grpc_url, "--out", str(out), "--shared-memory", "cuda",
         "--concurrency", "1", *SHORT]
    )  # fmt: skip
    assert code == 0, (out / "summary.md").read_text()
    for target in ("engine", "ensemble"):
        assert "--shared-memory cuda" in (out / f"{target}-cuda-c1.log").read_text()
