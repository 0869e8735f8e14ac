"""This stack against the reference pipeline, measured side by side in one run.

    python -m benchmarks.bench_pipeline [--target auto] [--frames 40] [--width 1280 --height 720]
        [--depths 1,2,4] [--out DIR]

On the same frames (the synthetic clip), it times:
- the engine alone, in process (ONNX Runtime on the CPU, batch 1);
- the reference pipeline in process on the CPU (preprocess -> engine -> postprocess, one frame
  at a time), with its stages timed apart;
- the served ensemble of the target (cpu, or gpu: every stage on the GPU) through the real
  tritonserver, streamed with clients.stream over plain gRPC and system shared memory at
  several depths, with Triton's per-stage statistics.
It prints ms/frame, frames/s and the ratios, and writes pipeline.json and pipeline.md to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from backends.classes import ClassTable
from backends.contract import POSTPROCESS, PREPROCESS
from backends.pipeline import ReferencePipeline
from backends.postprocess_settings import PostprocessSettings
from benchmarks.host import device_description
from clients.server_stats import format_table, read_counters, stats_since
from clients.stream import stream_frames
from clients.transports import make_transport
from tools.build_repository import build_repository, spec_from_files
from tools.demo import resolve_target
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, random_weights_export
from tools.make_sample_video import render_frames
from tools.targets import TARGETS, get_target
from tools.tritonserver import REPO_ROOT, TritonServer


@dataclass
class Row:
    name: str
    ms_per_frame: float
    frames_per_s: float
    note: str = ""


def _timed(fn, items) -> list[float]:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return times


def bench_in_process(pipeline: ReferencePipeline, frames: list[np.ndarray]) -> list[Row]:
    pipeline(frames[0])  # warm-up
    inputs = [pipeline.preprocess(f) for f in frames]
    outputs = [pipeline.engine(x) for x in inputs]
    pre = _timed(pipeline.preprocess, frames)
    eng = _timed(pipeline.engine, inputs)
    post = _timed(lambda pair: pipeline.postprocess(pair[1], pair[0].shape[:2]), list(zip(frames, outputs)))
    whole = _timed(pipeline, frames)

    def row(name: str, times: list[float], note: str = "") -> Row:
        ms = statistics.median(times) * 1e3
        return Row(name, ms, 1e3 / ms, note)

    return [
        row("engine alone (in process, ONNX Runtime b1)", eng),
        row("reference preprocess", pre),
        row("reference postprocess", post),
        row("reference pipeline (in process, 1 frame at a time)", whole),
    ]


def bench_served(url: str, frames: list[np.ndarray], modes: list[tuple[str, int]]) -> tuple[list[Row], str]:
    rows, tables = [], []
    with grpcclient.InferenceServerClient(url) as client:
        for transport_kind, depth in modes:
            with make_transport(transport_kind, client, depth) as transport:
                # Warm-up at this depth: batch shapes the Triton-lang kernels have not seen yet
                # compile on first use, in every instance (seconds), not in steady state.
                list(stream_frames(client, frames[: 4 * depth], transport, depth))
                before = read_counters(client)
                start = time.perf_counter()
                outcomes = list(stream_frames(client, frames, transport, depth))
                seconds = time.perf_counter() - start
            failed = sum(not o.ok for o in outcomes)
            if failed:
                raise RuntimeError(f"{failed} frames failed over {transport_kind}: {outcomes[0].error}")
            name = f"ensemble via tritonserver ({transport_kind}, depth {depth})"
            rows.append(Row(name, seconds / len(frames) * 1e3, len(frames) / seconds, "wall time / frame"))
            tables.append(f"{name}\n{format_table(stats_since(client, before, served=len(frames)))}")
    return rows, "\n\n".join(tables)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="auto", choices=["auto", *TARGETS])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--reference-frames", type=int, default=20, help="frames the in-process reference times")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--depths", default="1,2,4", help="system shm depths to stream at")
    parser.add_argument("--baseline", action="store_true", help="also serve the target with the reference stages")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cpu")
    args = parser.parse_args(argv)
    target = get_target(resolve_target(args.target))

    exported = random_weights_export("nano", REPO_ROOT / "build" / "engines" / "random")
    settings = PostprocessSettings(100, RANDOM_WEIGHTS_THRESHOLD, ClassTable.load(exported.classes))
    frames = list(render_frames(args.frames, args.width, args.height))

    rows = bench_in_process(ReferencePipeline(exported.onnx, settings), frames[: args.reference_frames])
    args.out.mkdir(parents=True, exist_ok=True)
    modes = [("grpc", 1)] + [("system_shm", int(d)) for d in args.depths.split(",")]
    # With --baseline the same target is served first with the reference stages: before/after
    # of the kernels in one run.
    variants = [("reference stages", True)] if args.baseline else []
    variants.append(("target's stages", False))
    stage_tables = []
    for label, reference_stages in variants:
        spec = spec_from_files(
            target.name, None, exported.onnx, RANDOM_WEIGHTS_THRESHOLD,
            weights=exported.weights, reference_stages=reference_stages,
        )  # fmt: skip
        repository = build_repository(spec, REPO_ROOT / "build" / "bench_repository")
        impls = f"{spec.values()[PREPROCESS]['IMPL']}/{spec.values()[POSTPROCESS]['IMPL']}"
        name = f"{target.name} target, {spec.engine} engine, {impls} pre/post"
        log = REPO_ROOT / "build" / "bench_tritonserver.log"
        with TritonServer.for_target(repository, log, target) as server:
            served, tables = bench_served(server.grpc_url, frames, modes)
        rows += [Row(f"{name}: {r.name}", r.ms_per_frame, r.frames_per_s, r.note) for r in served]
        stage_tables.append(f"{name} ({label})\n\n{tables}")
    stage_tables = "\n\n".join(stage_tables)

    engine_ms = rows[0].ms_per_frame
    reference_ms = rows[3].ms_per_frame
    lines = [
        f"# Pipeline benchmark: RF-DETR-Seg-Nano (random weights), {args.frames} frames {args.width}x{args.height}, "
        f"target {target.name}",
        "",
        f"Device: {device_description()}",
        f"Command: python -m benchmarks.bench_pipeline {' '.join(argv if argv is not None else sys.argv[1:])}",
        "",
        "| path | ms/frame | frames/s | vs engine alone | vs reference pipeline |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.ms_per_frame:.1f} | {r.frames_per_s:.2f} | "
            f"{r.ms_per_frame / engine_ms:.2f}x | {r.ms_per_frame / reference_ms:.2f}x |"
        )
    lines += ["", "Triton per-stage statistics (ms per request):", "", "```", stage_tables, "```"]
    report = "\n".join(lines)
    print(report)
    (args.out / "pipeline.md").write_text(report + "\n")
    (args.out / "pipeline.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
