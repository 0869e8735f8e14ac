"""A stage's per-request input copy with glibc's default malloc thresholds against the fixed ones of
backends.host_heap, side by side in one run (a benchmark; any host).

    python -m benchmarks.bench_host_heap [--batches 1,4,8,32] [--repeats 60] \
        [--out benchmarks/results/cpu/host-heap.md]

The python backend stub copies each CPU input into a new numpy array before execute and frees
it after the response (backends.host_heap says where). Each mode runs in a fresh process, so it
starts from an untouched heap. The process copies `batch` 1080p BGR frames into new arrays,
frees them, and repeats that `repeats` times. It reports, per frame, the median time and the
minor page faults (getrusage). The first tenth of the repeats are left out as warm-up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from backends.host_heap import keep_freed_host_memory
from benchmarks.host import publish_report

FRAME_SHAPE = (1080, 1920, 3)


def copy_costs(kept: bool, batch: int, repeats: int) -> tuple[float, float]:
    """(median ms, minor page faults) per frame, for `batch` frames copied and freed per repeat."""
    if kept and not keep_freed_host_memory("bench_host_heap"):
        raise RuntimeError("this C library refused fixed malloc thresholds")
    source = np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    times, faults = [], []
    for _ in range(repeats):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        copies = [source.copy() for _ in range(batch)]
        del copies
        times.append((time.perf_counter() - started) / batch)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / batch)
    steady = slice(repeats // 10, None)
    return statistics.median(times[steady]) * 1e3, statistics.median(faults[steady])


def in_fresh_process(kept: bool, batch: int, repeats: int) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(copy_costs, (kept, batch, repeats))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", default="1,4,8,32", help="comma-separated frames per execute")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--out", type=Path, help="results file (markdown)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.repeats < 10 or any(b < 1 for b in batches):
        parser.error("--repeats must be >= 10 and every batch >= 1")
    rows = [
        "| frames per execute | default ms/frame | kept ms/frame | default / kept | default faults/frame | kept faults/frame |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for batch in batches:
        default_ms, default_faults = in_fresh_process(False, batch, args.repeats)
        kept_ms, kept_faults = in_fresh_process(True, batch, args.repeats)
        rows.append(
            f"| {batch} | {default_ms:.3f} | {kept_ms:.3f} | {default_ms / kept_ms:.1f}x "
            f"| {default_faults:.0f} | {kept_faults:.0f} |"
        )
    frame_mb = np.prod(FRAME_SHAPE) / 1e6
    body = (
        f"Each frame is {frame_mb:.1f} MB ({'x'.join(map(str, FRAME_SHAPE))} uint8); {args.repeats} repeats a row, "
        "the first tenth left out; a fresh process for each cell.\n\n" + "\n".join(rows)
    )
    publish_report(
        "Per-request input copies: glibc's default malloc thresholds against backends.host_heap's",
        "benchmarks.bench_host_heap",
        argv,
        body,
        args.out,
    )


if __name__ == "__main__":
    main()
