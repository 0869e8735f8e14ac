"""The compiled engine against eager PyTorch and the plain torch.compile + CUDA graph baseline,
side by side in one run (a benchmark; needs CUDA).

    python -m benchmarks.bench_engine [--sizes nano,small,medium] [--batches 1,8,32] \
        [--baseline-sizes nano] [--out benchmarks/results/h200/engine.md]

Per size and batch, ms per batch (median of CUDA-event times) and frames/s, random weights:
- eager: rfdetr's model in FP16, eager (what the issue's numbers call eager);
- baseline: torch.compile (inductor default, dynamic=False) of that same FP16 model, its
  forward captured in one CUDA graph per batch size (tools.md's 1.29 ms / 10.2 ms on an H200);
- engine: backends.engine_compiled.CompiledEngine, as the server calls it: the float32 batch
  copied into its bucket, the graph replayed, float32 outputs copied out;
- engine graph: the engine's graph replay alone.
The engine's per-bucket compile + capture seconds are reported too: cold, or from the torch.compile
cache that a build (tools.build_repository on this GPU) left in this process's cache folders.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from backends.batch_buckets import bucket_sizes
from backends.contract import MODEL_SIZES
from backends.engine_compiled import CompiledEngine
from backends.engine_torch import TorchEngine
from benchmarks.host import publish_report


def median_ms(fn, repeats: int = 50) -> float:
    """Median CUDA-event time of fn() after 3 warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def graphed(fn, example: torch.Tensor) -> torch.cuda.CUDAGraph:
    """fn(example) captured in a CUDA graph, after warm-up calls on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn(example)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        fn(example)
    return graph


def eager_and_baseline(size: str, inputs: dict[int, torch.Tensor], with_baseline: bool) -> dict[int, dict]:
    """{batch: eager ms, and baseline ms and prepare seconds when with_baseline}."""
    model = TorchEngine(size, None, "cuda").model.half().eval()
    rows = {b: {} for b in inputs}
    with torch.inference_mode():
        for b, x in inputs.items():
            half = x.half()
            rows[b]["eager"] = median_ms(lambda half=half: model(half), repeats=20)
        if with_baseline:
            compiled = torch.compile(model, dynamic=False)
            for b, x in inputs.items():
                started = time.perf_counter()
                graph = graphed(compiled, x.half())
                rows[b]["baseline_prepare_s"] = time.perf_counter() - started
                rows[b]["baseline"] = median_ms(graph.replay)
            torch._dynamo.reset()
    return rows


def bench_size(size: str, batches: list[int], with_baseline: bool) -> list[dict]:
    side = MODEL_SIZES[size].resolution
    inputs = {b: torch.randn(b, 3, side, side, device="cuda") for b in batches}
    rows = eager_and_baseline(size, inputs, with_baseline)
    engine = CompiledEngine(size, None, "cuda", bucket_sizes(max(batches)))
    for b, x in inputs.items():
        rows[b].update(size=size, batch=b, engine_prepare_s=engine.prepare_s.get(b))
        rows[b]["engine"] = median_ms(lambda x=x: engine(x))
        rows[b]["engine_graph"] = median_ms(engine._graphs[b].graph.replay) if b in engine._graphs else None
    return list(rows.values())


def table(rows: list[dict]) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.2f}"

    lines = [
        (
            "| size | batch | eager ms | baseline ms | engine ms (frames/s) | engine graph ms | engine vs baseline "
            "| engine vs eager | compile+capture s (engine / baseline) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        base = r.get("baseline")
        vs_base = "-" if base is None else f"{base / r['engine']:.2f}x"
        base_prepare = "-" if base is None else round(r["baseline_prepare_s"], 1)
        lines.append(
            f"| {r['size']} | {r['batch']} | {ms(r['eager'])} | {ms(base)} "
            f"| {ms(r['engine'])} ({r['batch'] * 1000 / r['engine']:.0f}) | {ms(r['engine_graph'])} "
            f"| {vs_base} | {r['eager'] / r['engine']:.1f}x | {r['engine_prepare_s']} / {base_prepare} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="nano", help="comma-separated rfdetr sizes")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--baseline-sizes", default="nano", help="sizes that also run the baseline (compiles)")
    parser.add_argument("--out", type=Path, help="markdown file for the results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    batches = sorted({int(b) for b in args.batches.split(",")})
    rows = []
    for size in args.sizes.split(","):
        rows += bench_size(size, batches, size in args.baseline_sizes.split(","))
        print(table(rows), flush=True)
    argv = argv if argv is not None else sys.argv[1:]
    title = "Engine: eager vs torch.compile + CUDA graph baseline vs the compiled engine"
    publish_report(title, "benchmarks.bench_engine", argv, table(rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
