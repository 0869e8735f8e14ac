"""The fused preprocess kernel against the CPU reference and torch on the GPU (a benchmark).

    python -m benchmarks.bench_preprocess [--resolution 312] [--out benchmarks/results/h200/preprocess.md]

For 312x176, 1280x720, 1920x1080, 3840x2160 frames and a batch of 8 mixed sizes, all to R x R:
- CPU reference: backends.preprocess.preprocess_frame on CPU tensors (median wall time);
- torch GPU: backends.preprocess.preprocess_batch on frames already on the GPU;
- kernel: backends.preprocess_kernel.preprocess_frames, bilinear and pil modes, one launch.
Per frame, three times:
- do_bench: triton.testing.do_bench's median (CUDA events around each call, L2 flushed before
  it). When the call's host work outlasts the flush, the events also time the GPU waiting for
  the host;
- device: the GPU time of the kernels and copies a call queues (torch.profiler, CUPTI), L2
  flushed before each call, the flush not counted;
- host launch: time.perf_counter around the call without a sync, averaged.
The memory floor is the bytes a mode must move (the source pixels its windows touch, the fp32
output) over the device bandwidth, measured once as a 1 GiB device-to-device copy (read +
write). Then one launch for the batch of 8 against the sum of its frames launched one by one.
Prints markdown tables and writes them, with the device and the command, to --out. Needs CUDA.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import triton
from triton.testing import do_bench

from backends.preprocess import preprocess_batch, preprocess_frame
from backends.preprocess_kernel import _pil_axis_coefficients, preprocess_frames
from benchmarks.host import device_description

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "312x176": [(176, 312)],
    "1280x720": [(720, 1280)],
    "1920x1080": [(1080, 1920)],
    "3840x2160": [(2160, 3840)],
}
# (height, width); one portrait frame.
BATCH = [(1080, 1920), (720, 1280), (2160, 3840), (176, 312), (480, 640), (1920, 1080), (720, 1280), (1080, 1920)]
MODES = ("bilinear", "pil")
# The targets, per 1080p frame and for the batch of 8.
TARGET_US_1080P = 30.0
TARGET_VS_CPU = 100.0
TARGET_VS_TORCH = 5.0
TARGET_BATCH_VS_SINGLES = 0.25
FLUSH_BYTES = 256 << 20  # more than the H200's 60 MiB L2, as do_bench flushes


@dataclass
class Timing:
    """One path's times per frame, us."""

    do_bench: float
    device: float

    def __str__(self) -> str:
        return f"{self.do_bench:,.1f} / {self.device:,.1f}"


@dataclass
class Case:
    name: str
    cpu_us: float  # per frame
    torch: Timing
    kernel: dict[str, Timing]  # by mode
    launch_us: dict[str, float]  # host side, per call, by mode
    floor_us: dict[str, float]  # per frame, by mode


def frames_for(sizes: list[tuple[int, int]], seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def bandwidth_bytes_per_s() -> float:
    """A 1 GiB device-to-device copy: bytes read + written over do_bench's median."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / (ms * 1e-3)


def bytes_moved(height: int, width: int, resolution: int, mode: str) -> int:
    """The source bytes the mode's windows touch plus the fp32 output."""
    if mode == "bilinear":

        def used(size: int) -> int:
            src = np.maximum((np.arange(resolution) + 0.5) * (size / resolution) - 0.5, 0)
            first = np.minimum(np.floor(src).astype(np.int64), size - 1)
            return len(np.union1d(first, np.minimum(first + 1, size - 1)))

    else:

        def used(size: int) -> int:
            table, _ = _pil_axis_coefficients(size, resolution)
            first, count = table[:resolution], table[resolution : 2 * resolution]
            return len(np.unique(np.concatenate([np.arange(f, f + c) for f, c in zip(first, count)])))

    return used(height) * used(width) * 3 + 3 * resolution * resolution * 4


def cpu_us(frames: list[torch.Tensor], resolution: int, budget_s: float = 1.5) -> float:
    """Median wall time of the CPU reference over the frames, per frame."""
    preprocess_frame(frames[0], resolution)  # warm-up
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 50):
        start = time.perf_counter()
        for frame in frames:
            preprocess_frame(frame, resolution)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(frames) * 1e6


def device_us(fn, calls: int = 30) -> float:
    """GPU time of the kernels and copies one call queues, us (CUPTI through torch.profiler),
    with L2 flushed before each call; the flush's fill kernels are left out."""
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(calls):
            flush.zero_()
            fn()
        torch.cuda.synchronize()
    busy = sum(
        event.self_device_time_total
        for event in profile.key_averages()
        if event.device_type == torch.autograd.DeviceType.CUDA and "FillFunctor" not in event.key
    )
    if busy <= 0:
        raise RuntimeError("the profiler saw no GPU work: is CUPTI missing?")
    return busy / calls


def timing(fn, n_frames: int) -> Timing:
    return Timing(do_bench(fn, return_mode="median") * 1e3 / n_frames, device_us(fn) / n_frames)


def launch_us(fn, rounds: int = 20, calls: int = 10) -> float:
    """Host time of one call without a sync, averaged. Rounds of `calls` calls with the GPU
    drained between them (as a server's queue would be), so pinned table buffers get reused;
    run after do_bench has warmed everything up."""
    elapsed = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed += time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / (rounds * calls) * 1e6


def measure(name: str, sizes: list[tuple[int, int]], resolution: int, bandwidth: float) -> Case:
    cpu_frames = frames_for(sizes)
    gpu_frames = [f.cuda() for f in cpu_frames]
    n = len(sizes)
    device = gpu_frames[0].device
    torch_timing = timing(lambda: preprocess_batch(gpu_frames, resolution, device), n)
    kernel, launch, floor = {}, {}, {}
    for mode in MODES:
        out = torch.empty((n, 3, resolution, resolution), device=device)

        def run(mode=mode, out=out):
            preprocess_frames(gpu_frames, resolution, mode=mode, out=out)

        kernel[mode] = timing(run, n)
        launch[mode] = launch_us(run)
        moved = sum(bytes_moved(h, w, resolution, mode) for h, w in sizes)
        floor[mode] = moved / bandwidth * 1e6 / n
    return Case(name, cpu_us(cpu_frames, resolution), torch_timing, kernel, launch, floor)


def singles(sizes: list[tuple[int, int]], resolution: int, mode: str) -> tuple[Timing, float]:
    """Sums over the frames, each in a launch of its own: GPU times and host launch us."""
    total, host = Timing(0.0, 0.0), 0.0
    for frame in frames_for(sizes):
        frames = [frame.cuda()]
        out = torch.empty((1, 3, resolution, resolution), device=frames[0].device)

        def run(frames=frames, out=out):
            preprocess_frames(frames, resolution, mode=mode, out=out)

        one = timing(run, 1)
        total = Timing(total.do_bench + one.do_bench, total.device + one.device)
        host += launch_us(run)
    return total, host


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(
    cases: list[Case],
    batch: dict[str, tuple[Timing, float, Timing, float]],
    bandwidth: float,
    resolution: int,
) -> str:
    lines = [
        f"Memory bandwidth (1 GiB device-to-device copy, read + write): {bandwidth / 1e9:.0f} GB/s. "
        f"Output R = {resolution}, fp32. GPU times are us per frame, do_bench / device (see the "
        "module docstring); host launch is us per call.",
        "",
        "| frames | CPU reference | torch GPU | kernel bilinear | kernel pil | host launch bilinear / pil |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        lines.append(
            f"| {c.name} | {c.cpu_us:,.0f} | {c.torch} | {c.kernel['bilinear']} | {c.kernel['pil']} "
            f"| {c.launch_us['bilinear']:.0f} / {c.launch_us['pil']:.0f} |"
        )
    lines += [
        "",
        "Ratios, from do_bench / from device time; x floor is device time over the memory floor:",
        "",
        "| frames | bilinear vs CPU | bilinear vs torch GPU | bilinear x floor | pil vs CPU | pil x floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        b, p = c.kernel["bilinear"], c.kernel["pil"]
        lines.append(
            f"| {c.name} | {c.cpu_us / b.do_bench:,.0f}x / {c.cpu_us / b.device:,.0f}x "
            f"| {c.torch.do_bench / b.do_bench:.1f}x / {c.torch.device / b.device:.1f}x "
            f"| {b.device / c.floor_us['bilinear']:.1f} "
            f"| {c.cpu_us / p.do_bench:,.0f}x / {c.cpu_us / p.device:,.0f}x | {p.device / c.floor_us['pil']:.1f} |"
        )
    lines += [
        "",
        "The batch of 8 mixed sizes (" + ", ".join(f"{w}x{h}" for h, w in BATCH) + ") in one launch "
        "against the sum of 8 single launches, us per batch:",
        "",
        "| mode | time | one launch | 8 single launches | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for mode, (one, one_host, eight, eight_host) in batch.items():
        lines += [
            f"| {mode} | do_bench | {one.do_bench:,.1f} | {eight.do_bench:,.1f} | {one.do_bench / eight.do_bench:.2f} |",
            f"| {mode} | device | {one.device:,.1f} | {eight.device:,.1f} | {one.device / eight.device:.2f} |",
            f"| {mode} | host launch | {one_host:,.1f} | {eight_host:,.1f} | {one_host / eight_host:.2f} |",
        ]
    hd = next(c for c in cases if c.name == "1920x1080")
    b = hd.kernel["bilinear"]
    one, one_host, eight, eight_host = batch["bilinear"]

    def row(target: str, values: tuple[float, float], fmt: str, ok) -> str:
        shown = " / ".join(format(v, fmt) for v in values)
        return f"| {target} | {shown} | {met(ok(values[0]))} / {met(ok(values[1]))} |"

    lines += [
        "",
        "Targets (bilinear, the default mode; 1080p), do_bench / device:",
        "",
        "| target | measured | |",
        "| --- | ---: | --- |",
        row(f"kernel <= {TARGET_US_1080P:.0f} us per 1080p frame", (b.do_bench, b.device), ".1f",
            lambda v: v <= TARGET_US_1080P),
        row(f">= {TARGET_VS_CPU:.0f}x the CPU reference", (hd.cpu_us / b.do_bench, hd.cpu_us / b.device), ",.0f",
            lambda v: v >= TARGET_VS_CPU),
        row(f">= {TARGET_VS_TORCH:.0f}x torch on the GPU", (hd.torch.do_bench / b.do_bench, hd.torch.device / b.device),
            ".1f", lambda v: v >= TARGET_VS_TORCH),
        row("batch of 8 <= sum of 8 singles / 4", (one.do_bench / eight.do_bench, one.device / eight.device), ".2f",
            lambda v: v <= TARGET_BATCH_VS_SINGLES),
        f"| (host launch: batch of 8 / 8 singles) | {one_host / eight_host:.2f} "
        f"| {met(one_host / eight_host <= TARGET_BATCH_VS_SINGLES)} |",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=312)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "h200" / "preprocess.md"
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_preprocess needs a CUDA device", file=sys.stderr)
        return 2

    bandwidth = bandwidth_bytes_per_s()
    cases = [measure(name, sizes, args.resolution, bandwidth) for name, sizes in SIZES.items()]
    cases.append(measure("batch of 8 mixed", BATCH, args.resolution, bandwidth))
    batch_case = cases[-1]
    batch = {}
    for mode in MODES:
        one = batch_case.kernel[mode]
        one = Timing(one.do_bench * len(BATCH), one.device * len(BATCH))
        batch[mode] = (one, batch_case.launch_us[mode], *singles(BATCH, args.resolution, mode))
    table = report(cases, batch, bandwidth, args.resolution)
    print(table)

    command = "python -m benchmarks.bench_preprocess " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = [
        f"# Preprocess kernel benchmark: frames -> {args.resolution}x{args.resolution} engine input",
        "",
        f"Device: {device_description()}",
        f"Software: torch {torch.__version__}, triton {triton.__version__}",
        f"Command: {command.strip()}",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join([*header, table]) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
