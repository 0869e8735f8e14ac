"""Host frames to the GPU from shared memory: pageable against registered (backends.host_upload),
side by side in one run, in one and in several processes at once (a benchmark; needs CUDA).

    python -m benchmarks.bench_host_upload [--processes 1,3] [--frames 4] [--repeats 150] \
        [--out benchmarks/results/h200/host-upload-bench.md]

Each process maps a /dev/shm file the size of its frames (as a python backend stub holds its
inputs), fills it, and uploads its 1080p BGR frames with `.to("cuda", non_blocking=True)` then a
stream sync, `repeats` times; per frame, the median of: the whole upload, the host's time until
the calls returned, and the bandwidth. "registered": the mapping first passed through
backends.host_upload.PinnedMappings (cudaHostRegister of the whole mapping), whose one-time cost
is reported. The processes start their uploads together (a barrier), as a stage's instances do.
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import torch
import torch.multiprocessing as mp

from backends.host_upload import PinnedMappings
from benchmarks.host import publish_report

FRAME_BYTES = 1080 * 1920 * 3


def shared_frames(count: int, fill: int) -> tuple[mmap.mmap, list[torch.Tensor]]:
    """`count` frames' bytes over one /dev/shm file mapping (the file itself unlinked at once)."""
    path = f"/dev/shm/bench_host_upload_{uuid.uuid4().hex}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        os.ftruncate(fd, count * FRAME_BYTES)
        region = mmap.mmap(fd, count * FRAME_BYTES)
    finally:
        os.close(fd)
        os.unlink(path)
    memory = torch.frombuffer(region, dtype=torch.uint8)
    memory.fill_(fill)
    return region, [memory[i * FRAME_BYTES : (i + 1) * FRAME_BYTES] for i in range(count)]


def upload_times(registered: bool, frames: int, repeats: int, fill: int, barrier, results) -> None:
    """One process's measurement, put on `results` as a dict."""
    region, host = shared_frames(frames, fill)
    device = torch.device("cuda")
    register_ms = None
    if registered:
        started = time.perf_counter()
        if not PinnedMappings().pin(host[0]):
            raise RuntimeError("cudaHostRegister refused the frames' mapping")
        register_ms = (time.perf_counter() - started) * 1e3
    for frame in host:  # the first upload of each: the driver's one-time work out of the timing
        frame.to(device)
    torch.cuda.synchronize()
    barrier.wait()
    whole, calls = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        uploaded = [frame.to(device, non_blocking=True) for frame in host]
        returned = time.perf_counter()
        torch.cuda.current_stream().synchronize()
        done = time.perf_counter()
        whole.append((done - started) * 1e3 / frames)
        calls.append((returned - started) * 1e3 / frames)
    exact = all(bool((frame == fill).all()) for frame in uploaded)
    results.put({"ms": statistics.median(whole), "host_ms": statistics.median(calls), "register_ms": register_ms, "exact": exact})
    del host, uploaded
    region.close()


def measure(registered: bool, processes: int, frames: int, repeats: int) -> list[dict]:
    context = mp.get_context("spawn")  # CUDA in each child
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=upload_times, args=(registered, frames, repeats, rank + 1, barrier, results))
        for rank in range(processes)
    ]
    for worker in workers:
        worker.start()
    rows = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    return rows


def table(measured: dict[tuple[str, int], list[dict]]) -> str:
    lines = [
        "| memory | processes | ms per frame | host ms per frame | GB/s per process | registering, ms | bytes exact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (memory, processes), rows in measured.items():
        ms = [r["ms"] for r in rows]
        register = [r["register_ms"] for r in rows if r["register_ms"] is not None]
        lines.append(
            f"| {memory} | {processes} | {min(ms):.3f}-{max(ms):.3f} | {max(r['host_ms'] for r in rows):.3f} "
            f"| {FRAME_BYTES / max(ms) / 1e6:.1f}-{FRAME_BYTES / min(ms) / 1e6:.1f} "
            f"| {f'{min(register):.0f}-{max(register):.0f}' if register else '-'} | {all(r['exact'] for r in rows)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,3", help="comma-separated process counts")
    parser.add_argument("--frames", type=int, default=4, help="1080p frames each process uploads per round")
    parser.add_argument("--repeats", type=int, default=150, help="rounds per process")
    parser.add_argument("--out", type=Path, help="markdown file for the results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    if args.frames < 1 or args.repeats < 1:
        parser.error("--frames and --repeats must be >= 1")
    counts = [int(p) for p in args.processes.split(",")]
    if min(counts) < 1:
        parser.error("--processes must be >= 1")
    measured = {}
    for processes in counts:
        for memory in ("pageable", "registered"):
            measured[(memory, processes)] = measure(memory == "registered", processes, args.frames, args.repeats)
    argv = argv if argv is not None else sys.argv[1:]
    title = "Host frames to the GPU from /dev/shm: pageable against registered"
    publish_report(title, "benchmarks.bench_host_upload", argv, table(measured), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
