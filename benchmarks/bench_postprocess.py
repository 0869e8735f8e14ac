"""The postprocess kernels against the reference, per frame, on the GPU.

    python -m benchmarks.bench_postprocess [--out FILE] [--detections 10,25,100]
        [--sizes 1280x720,1920x1080,3840x2160] [--repeats 20] [--device cuda]

For each frame size and detection count: RF-DETR-Seg-Nano-shaped outputs (100 queries, 91
class logits, 78x78 mask logits) with exactly that many confident queries, each with a blob
mask (radius 3-30 low-res pixels, as tests/backends/test_postprocess.py), one frame per batch.
Per frame, median over the repeats:
- reference (backends.postprocess): GPU ms = selection + every mask upsampled and thresholded
  (CUDA events); copy ms = the dense masks to the host; host ms = pycocotools RLE and polygons;
  end to end = postprocess_batch itself, wall clock;
- kernels (backends.postprocess_kernel): GPU ms = sigmoid + the six Triton launches (events);
  copy ms = waiting for them and copying rows, strings and run boundaries (fetch); host strings
  ms = slicing the strings that came from the device; polygons from the runs on up to
  backends.rle_runs.MAX_THREADS threads, the process's helpers woken by the fetch as the served
  stage wakes them (rle_runs.kept_crew), then again with helpers started by the call (as served
  before the crew was kept), and on one thread (its CPU time); end to end =
  postprocess_batch_kernels, wall clock;
- kernels + graph (backends.postprocess_graph, what the served stage runs for a single frame on
  a GPU): the same, the device work replayed from the frame geometry's CUDA graph;
- for both, GPU busy ms: the device's busy time of one whole call (kernels, copies, memsets,
  torch.profiler), without the idle gaps while the host launches;
- bytes copied device -> host per frame, with polygons and without (the kernels then copy no
  run boundaries).
Then the selection alone for batches of 1 and 8 frames (threshold 0.5, and 0.0: every score is
a candidate), kernel against the reference's torch ops, and the COCO strings of 25 blob masks at
1080p from their run boundaries: the strings kernel on the device against pycocotools'
frPyObjects per mask on the host; and the host polygons per frame when one call traces 1, 2, 4
or 8 frames' masks, as a served batch is. Prints a markdown report, and writes it to --out when
given.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from backends.polygons import largest_contour
from backends.postprocess import postprocess_batch, select_detections, upsample_mask
from backends.postprocess_settings import PostprocessSettings
from backends.rle import encode_mask
from benchmarks.host import device_description
from tools.postprocess_parity import NUM_CLASSES, coco_like_classes

NUM_QUERIES, MASK_SIDE = 100, 78  # RF-DETR-Seg-Nano
THRESHOLD = 0.5


def nano_outputs(detections: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's dets, labels, masks with exactly `detections` queries above THRESHOLD."""
    rng = np.random.default_rng(seed)
    named = np.flatnonzero(coco_like_classes().named(np.arange(NUM_CLASSES)))
    dets = rng.uniform(0.05, 0.95, (NUM_QUERIES, 4)).astype(np.float32)
    dets[:, 2:] = rng.uniform(0.02, 0.6, (NUM_QUERIES, 2))
    labels = rng.normal(-8.0, 1.0, (NUM_QUERIES, NUM_CLASSES)).astype(np.float32)
    hot = rng.choice(NUM_QUERIES, detections, replace=False)
    labels[hot, rng.choice(named, detections)] = rng.uniform(0.5, 4.0, detections)
    masks = rng.normal(-3.0, 1.0, (NUM_QUERIES, MASK_SIDE, MASK_SIDE)).astype(np.float32)
    yy, xx = np.mgrid[0:MASK_SIDE, 0:MASK_SIDE]
    for q in hot:
        cy, cx, r = rng.uniform(0, MASK_SIDE), rng.uniform(0, MASK_SIDE), rng.uniform(3, 30)
        masks[q] += (8.0 * (1.0 - np.hypot(yy - cy, xx - cx) / r)).astype(np.float32)
    return dets, labels, masks


class Clock:
    """Wall clock and, on a GPU, CUDA events: elapsed device time between marks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def device_ms(self, work: Callable[[], object]) -> tuple[float, object]:
        """Device time of the work queued by work() (wall time without a GPU)."""
        self.sync()
        if not self.cuda:
            start = time.perf_counter()
            result = work()
            return (time.perf_counter() - start) * 1e3, result
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        result = work()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end), result

    def busy_ms(self, work: Callable[[], object]) -> float:
        """The device's busy time for work() (kernels, copies, memsets: torch.profiler), NaN
        without a GPU. Unlike device_ms, idle gaps while the host launches are not counted."""
        if not self.cuda:
            return float("nan")
        from torch.profiler import ProfilerActivity, profile

        self.sync()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            work()
            self.sync()
        return sum(getattr(e, "self_device_time_total", 0.0) for e in prof.key_averages()) / 1e3

    def wall_ms(self, work: Callable[[], object]) -> tuple[float, object]:
        self.sync()
        start = time.perf_counter()
        result = work()
        self.sync()
        return (time.perf_counter() - start) * 1e3, result


@dataclass
class Row:
    size: str
    detections: int
    impl: str
    gpu_ms: float
    busy_ms: float
    copy_ms: float
    rle_ms: float
    polygon_ms: float
    polygon_call_threads_ms: float
    polygon_one_thread_ms: float
    end_to_end_ms: float
    bytes_to_host: int
    bytes_without_polygons: int


def _median_rows(rows: list[Row]) -> Row:
    first = rows[0]
    return Row(
        first.size, first.detections, first.impl,
        *(statistics.median(getattr(r, name) for r in rows)
          for name in ("gpu_ms", "busy_ms", "copy_ms", "rle_ms", "polygon_ms", "polygon_call_threads_ms",
                       "polygon_one_thread_ms", "end_to_end_ms")),
        first.bytes_to_host,
        first.bytes_without_polygons,
    )


@contextlib.contextmanager
def tracer_threads(threads: int) -> Iterator[None]:
    """The host polygons traced on at most `threads` threads (backends.rle_runs.MAX_THREADS)
    inside the block, the module's own setting restored after it."""
    from backends import rle_runs

    default, rle_runs.MAX_THREADS = rle_runs.MAX_THREADS, threads
    try:
        yield
    finally:
        rle_runs.MAX_THREADS = default


def bench_reference(clock: Clock, tensors, size, settings, label: str, detections: int) -> Row:
    dets, labels, masks = tensors
    height, width = size

    def device_part():
        sel = select_detections(dets[0], labels[0], size, settings)
        return sel, [upsample_mask(masks[0, q], height, width) for q in sel.query_ids.tolist()]

    gpu_ms, (sel, dense) = clock.device_ms(device_part)
    copy_ms, host = clock.wall_ms(lambda: (sel.boxes.cpu(), sel.scores.cpu(), sel.class_ids.cpu(),
                                           [m.cpu().numpy() for m in dense]))
    start = time.perf_counter()
    rles = [encode_mask(m) for m in host[3]]
    rle_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    [largest_contour(m) for m in host[3]]
    polygon_ms = (time.perf_counter() - start) * 1e3
    assert len(rles) == detections, (len(rles), detections)
    end_ms, _ = clock.wall_ms(lambda: postprocess_batch(dets, labels, masks, [size], settings))
    busy_ms = clock.busy_ms(lambda: postprocess_batch(dets, labels, masks, [size], settings))
    copied = sum(m.nbytes for m in host[3]) + len(rles) * (16 + 4 + 8)
    return Row(
        label, detections, "reference", gpu_ms, busy_ms, copy_ms, rle_ms, polygon_ms, polygon_ms, polygon_ms, end_ms,
        copied, copied,
    )


def bench_kernels(clock: Clock, tensors, size, settings, label: str, detections: int, graphed: bool = False) -> Row:
    from backends import rle_runs
    from backends.packing import unpack_bytes
    from backends.postprocess_graph import postprocess_batch_graphed, process_graphs
    from backends.postprocess_kernel import launch_postprocess, postprocess_batch_kernels

    dets, labels, masks = tensors
    if graphed:
        launch = functools.partial(process_graphs().launch, dets, labels, masks, size, settings, True)
        whole = postprocess_batch_graphed
    else:
        launch = functools.partial(launch_postprocess, dets, labels, masks, [size], settings)
        whole = postprocess_batch_kernels
    gpu_ms, pending = clock.device_ms(launch)
    with rle_runs.kept_crew() as crew:  # as PendingPostprocess.results: woken by the fetch
        start = time.perf_counter()
        host = pending.fetch(crew)
        copy_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        rles = unpack_bytes(host.rle_chars, host.rle_offsets)
        rle_ms = (time.perf_counter() - start) * 1e3
        runs = (host.toggles, host.toggle_ends, np.full(len(rles), size[0]))
        start = time.perf_counter()
        rle_runs.largest_contours_from_runs(*runs, crew)
        polygon_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    with rle_runs.TracerCrew() as started_now:
        rle_runs.largest_contours_from_runs(*runs, started_now)
    polygon_call_threads_ms = (time.perf_counter() - start) * 1e3
    with tracer_threads(1):
        start = time.perf_counter()
        rle_runs.largest_contours_from_runs(*runs)
        polygon_one_thread_ms = (time.perf_counter() - start) * 1e3
    assert len(rles) == detections, (len(rles), detections)
    without = dataclasses.replace(settings, polygons=False)
    strings_only = launch_postprocess(dets, labels, masks, [size], without).fetch().device_to_host_bytes
    end_ms, _ = clock.wall_ms(lambda: whole(dets, labels, masks, [size], settings))
    busy_ms = clock.busy_ms(lambda: whole(dets, labels, masks, [size], settings))
    return Row(
        label, detections, "kernels + graph" if graphed else "kernels", gpu_ms, busy_ms, copy_ms, rle_ms,
        polygon_ms, polygon_call_threads_ms, polygon_one_thread_ms, end_ms, host.device_to_host_bytes, strings_only,
    )


def _reference_selection(dets: torch.Tensor, labels: torch.Tensor, settings: PostprocessSettings) -> list:
    return [select_detections(d, lab, (1080, 1920), settings) for d, lab in zip(dets, labels, strict=True)]


def bench_selection(clock: Clock, device: torch.device, repeats: int) -> list[str]:
    from backends.postprocess_kernel import class_name_flags
    from backends.select_kernel import select_detections_batch

    lines = [
        (
            "| frames | threshold | reference torch ops, frame by frame: ms | busy ms "
            "| kernel (sigmoid + 1 launch): ms | busy ms |"
        ),
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    classes = coco_like_classes()
    for batch in (1, 8):
        outputs = [nano_outputs(25, seed) for seed in range(batch)]
        dets, labels = (torch.from_numpy(np.stack([o[i] for o in outputs])).to(device) for i in range(2))
        sizes = torch.tensor([[1080, 1920]] * batch, dtype=torch.int32, device=device)
        flags = class_name_flags(classes, NUM_CLASSES, device)
        for threshold in (THRESHOLD, 0.0):
            settings = PostprocessSettings(NUM_QUERIES, threshold, classes)
            reference = functools.partial(_reference_selection, dets, labels, settings)
            kernel = functools.partial(
                select_detections_batch, labels.sigmoid(), dets, sizes, flags, NUM_QUERIES, threshold
            )
            cells = []
            for fn in (reference, kernel):
                fn()
                cells.append(f"{statistics.median(clock.device_ms(fn)[0] for _ in range(repeats)):.3f}")
                cells.append(f"{clock.busy_ms(fn):.3f}")
            lines.append(f"| {batch} | {threshold} | {' | '.join(cells)} |")
    return lines


def bench_batched_polygons(device: torch.device, repeats: int) -> list[str]:
    """Host polygons per frame when one call traces several frames' masks, as a served batch is
    traced (backends.postprocess_kernel.results_from_host): 25 detections a frame at 1080p, the
    runs from the kernels' own launch and fetch; median ms per call divided by the frames, each
    call after 2 ms idle, as between a server's requests (the process's helpers asleep, woken by
    the call itself, not during the fetch as the served stage wakes them)."""
    from backends import rle_runs
    from backends.postprocess_kernel import launch_postprocess

    height, width = 1080, 1920
    settings = PostprocessSettings(NUM_QUERIES, THRESHOLD, coco_like_classes())
    lines = [
        "| frames in the call | toggles | ms per frame | on one thread: ms per frame |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for frames in (1, 2, 4, 8):
        outputs = [nano_outputs(25, seed=25 + k) for k in range(frames)]
        tensors = (torch.from_numpy(np.stack([o[i] for o in outputs])).to(device) for i in range(3))
        host = launch_postprocess(*tensors, [(height, width)] * frames, settings).fetch()
        runs = (host.toggles, host.toggle_ends, np.full(len(host.toggle_ends), height))
        cells = []
        for threads in (rle_runs.MAX_THREADS, 1):
            times = []
            with tracer_threads(threads):
                for _ in range(repeats):
                    time.sleep(0.002)
                    start = time.perf_counter()
                    rle_runs.largest_contours_from_runs(*runs)
                    times.append((time.perf_counter() - start) * 1e3 / frames)
            cells.append(f"{statistics.median(times):.3f}")
        lines.append(f"| {frames} | {len(host.toggles):,} | {' | '.join(cells)} |")
    return lines


def bench_strings(clock: Clock, device: torch.device, repeats: int) -> list[str]:
    """COCO strings of 25 blob masks at 1080p from their run boundaries (the RLE kernel's, on
    the device): the strings kernel alone against pycocotools.frPyObjects per mask on the host."""
    from pycocotools import mask as mask_utils

    from backends.mask_region_kernel import Frames, mask_regions
    from backends.postprocess_kernel import class_name_flags
    from backends.rle_kernel import mask_toggles
    from backends.rle_strings_kernel import coco_strings
    from backends.select_kernel import select_detections_batch

    height, width = 1080, 1920
    settings = PostprocessSettings(NUM_QUERIES, THRESHOLD, coco_like_classes())
    dets, labels, masks = (torch.from_numpy(a)[None].to(device) for a in nano_outputs(25, seed=25))
    frames = Frames.build([(height, width)], tuple(masks.shape[-2:]), device)
    flags = class_name_flags(settings.classes, NUM_CLASSES, device)
    selection = select_detections_batch(labels.sigmoid(), dets, frames.sizes, flags, NUM_QUERIES, THRESHOLD)
    regions = mask_regions(selection.rows, selection.counts, masks, frames)
    toggles = mask_toggles(masks, regions, frames)
    rows = int(regions.counts.sum())
    ends = toggles.ends[:rows].cpu().numpy()
    runs = toggles.toggles[: int(ends[-1])].cpu().numpy().astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])

    def kernel():
        return coco_strings(toggles, regions, frames)

    def pycocotools():
        strings = []
        for first, last in zip(starts, ends, strict=True):
            counts = np.diff(runs[first:last], prepend=0, append=height * width)
            counts = counts[:-1] if last > first and counts[-1] == 0 else counts
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
            strings.append(rle["counts"])
        return strings

    strings = kernel()
    offsets = strings.offsets[: rows + 1].cpu().numpy()
    blob = strings.chars[: int(strings.total[0])].cpu().numpy().tobytes()
    expected = pycocotools()
    assert [blob[offsets[i] : offsets[i + 1]] for i in range(rows)] == expected
    device_ms = statistics.median(clock.device_ms(kernel)[0] for _ in range(repeats))
    busy_ms = clock.busy_ms(kernel)
    host_samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        pycocotools()
        host_samples.append((time.perf_counter() - start) * 1e3)
    return [
        f"| {rows} blob masks at {width}x{height}: run boundaries -> COCO strings | ms | busy ms | bytes |",
        "| --- | ---: | ---: | ---: |",
        (f"| Triton kernel on the device (backends.rle_strings_kernel) | {device_ms:.3f} | {busy_ms:.3f} "
        f"| {len(blob):,} (strings) |"),
        (f"| numpy counts + pycocotools.frPyObjects per mask, on the host | {statistics.median(host_samples):.3f} "
        f"| - | {4 * len(runs):,} (run boundaries) |"),
    ]


def format_report(
    rows: list[Row], selection: list[str], strings: list[str], batched: list[str], command: str
) -> str:
    lines = [
        "# Postprocess benchmark: reference vs kernels (per frame, RF-DETR-Seg-Nano outputs)",
        "",
        f"Device: {device_description()}",
        f"Command: {command}",
        "",
        (
            "| frame | detections | impl | GPU ms | GPU busy ms | copy ms | host strings ms | host polygons ms "
            "| threads started by the call ms | polygons on 1 thread ms | end to end ms | vs reference "
            "| bytes to host | without polygons |"
        ),
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = {(r.size, r.detections): r for r in rows if r.impl == "reference"}
    for r in rows:
        speedup = reference[(r.size, r.detections)].end_to_end_ms / r.end_to_end_ms
        lines.append(
            f"| {r.size} | {r.detections} | {r.impl} | {r.gpu_ms:.3f} | {r.busy_ms:.3f} | {r.copy_ms:.3f} "
            f"| {r.rle_ms:.3f} | {r.polygon_ms:.3f} | {r.polygon_call_threads_ms:.3f} | {r.polygon_one_thread_ms:.3f} "
            f"| {r.end_to_end_ms:.3f} "
            f"| {speedup:.1f}x | {r.bytes_to_host:,} "
            f"| {r.bytes_without_polygons:,} |"
        )
    lines += [
        "",
        "GPU ms: from the first to the last queued device operation (CUDA events, idle gaps while the",
        "host launches included); GPU busy ms: the sum of the kernels, copies and memsets of one whole",
        "call (torch.profiler); copy ms: waiting for the device and copying to the host; host strings ms:",
        "the reference's pycocotools encode of each dense mask, the kernels' slicing of the strings made",
        "on the device; host polygons ms: the tracer with the process's helpers woken by the fetch, as",
        "served; threads started by the call: the same tracing with helpers started when the runs are there",
        "and stopped after;",
        "end to end: the whole batched call, wall clock. Targets (issue 7): <= 0.25 ms GPU",
        "per 1080p frame with 25 detections, polygons <= 0.5 ms per frame, >= 50x the reference end to end.",
        "",
        "## Selection alone (25 detections per frame)",
        "",
        *selection,
        "",
        "## Run boundaries -> COCO compressed strings",
        "",
        *strings,
        "",
        "## Host polygons per frame, several frames in one call (1920x1080, 25 detections a frame)",
        "",
        *batched,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=str, default=None, help="markdown report file")
    parser.add_argument("--detections", default="10,25,100")
    parser.add_argument("--sizes", default="1280x720,1920x1080,3840x2160", help="WIDTHxHEIGHT,...")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: the benchmark times the kernels on a GPU (--device cpu runs them in the "
              "interpreter, for a smoke test only)", file=sys.stderr)
        return 2
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    clock = Clock(device)
    settings = PostprocessSettings(NUM_QUERIES, THRESHOLD, coco_like_classes())
    rows = []
    for text in args.sizes.split(","):
        width, height = (int(v) for v in text.lower().split("x"))
        for detections in (int(v) for v in args.detections.split(",")):
            outputs = nano_outputs(detections, seed=detections)
            tensors = tuple(torch.from_numpy(a)[None].to(device) for a in outputs)
            label = f"{width}x{height}"
            benches = [(bench_reference, max(3, args.repeats // 4)), (bench_kernels, args.repeats)]
            if device.type == "cuda":
                benches.append((functools.partial(bench_kernels, graphed=True), args.repeats))
            for bench, repeats in benches:
                bench(clock, tensors, (height, width), settings, label, detections)  # warm-up, compile
                rows.append(_median_rows([
                    bench(clock, tensors, (height, width), settings, label, detections) for _ in range(repeats)
                ]))
                print(rows[-1], flush=True)
    command = "python -m benchmarks.bench_postprocess " + " ".join(argv if argv is not None else sys.argv[1:])
    report = format_report(rows, bench_selection(clock, device, args.repeats),
                           bench_strings(clock, device, args.repeats),
                           bench_batched_polygons(device, args.repeats), command.strip())
    print(report)
    if args.out:
        with open(args.out, "w") as out:
            out.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
