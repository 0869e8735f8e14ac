"""The JPEG ensemble's decode: OpenCV on the host (the reference, and the cpu and jetson targets')
against nvJPEG on the GPU (the gpu target's), side by side in one run, with what the client pays
to encode and what the file saves on the wire (a benchmark; nvJPEG columns need a CUDA device).

    python -m benchmarks.bench_jpeg_decode [--sizes 1920x1080,3840x2160] [--qualities 75,90,95] \
        [--batches 1,4,16] [--repeats 30] [--out benchmarks/results/h200/jpeg-decode.md]

Each frame is the sample video's (tools.make_sample_video, as the perf suite sends), encoded at
each quality by backends.jpeg_files.encode_jpeg, as the jpeg transport does. Times are medians
of `repeats` calls, per frame: OpenCV decoding one file, and
backends.jpeg_decode.decode_jpegs_nvjpeg decoding a batch of `batch` files, synchronized, BGR
views included, as the JPEG preprocess stage calls it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from backends.jpeg_decode import decode_jpegs_nvjpeg, decode_jpegs_opencv
from backends.jpeg_files import encode_jpeg
from benchmarks.host import publish_report
from tools.make_sample_video import render_frames


def median_ms(call: Callable[[], object], repeats: int, per: int = 1) -> float:
    call()  # first use: nvJPEG's state, allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3 / per


def row_for(width: int, height: int, quality: int, batches: list[int], repeats: int) -> str:
    frame = next(render_frames(1, width, height))
    file = torch.from_numpy(encode_jpeg(frame, quality))
    encode_ms = median_ms(lambda: encode_jpeg(frame, quality), repeats)
    opencv_ms = median_ms(lambda: decode_jpegs_opencv([file], torch.device("cpu")), repeats)
    cells = []
    gpu = torch.device("cuda")
    for batch in batches:
        if torch.cuda.is_available():
            nvjpeg_ms = median_ms(lambda b=batch: decode_jpegs_nvjpeg([file] * b, gpu), repeats, per=batch)
            cells.append(f"{nvjpeg_ms:.3f} ({opencv_ms / nvjpeg_ms:.1f}x)")
        else:
            cells.append("no CUDA device")
    return (
        f"| {width}x{height} | {quality} | {file.numel():,} | {frame.nbytes / file.numel():.0f}x | "
        f"{encode_ms:.2f} | {opencv_ms:.2f} | " + " | ".join(cells) + " |"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1920x1080,3840x2160", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--qualities", default="75,90,95", help="comma-separated JPEG qualities")
    parser.add_argument("--batches", default="1,4,16", help="comma-separated files per nvJPEG call")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, help="results file (markdown)")
    args = parser.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
        qualities = [int(q) for q in args.qualities.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError as error:
        parser.error(f"sizes are WIDTHxHEIGHT, qualities and batches integers: {error}")
    if any(len(s) != 2 or min(s) < 1 for s in sizes) or any(not 1 <= q <= 100 for q in qualities):
        parser.error("every size must be WIDTHxHEIGHT >= 1x1 and every quality 1..100")
    if args.repeats < 3 or any(b < 1 for b in batches):
        parser.error("--repeats must be >= 3 and every batch >= 1")
    header = [
        "| frame | quality | JPEG bytes | raw / JPEG | client encode ms | OpenCV decode ms | "
        + " | ".join(f"nvJPEG ms/frame, batch {b} (OpenCV / nvJPEG)" for b in batches)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in batches) + " |",
    ]
    rows = [row_for(width, height, q, batches, args.repeats) for width, height in sizes for q in qualities]
    body = (
        f"Per frame, median of {args.repeats} calls; nvJPEG synchronized after each call of `batch` files.\n\n"
        + "\n".join(header + rows)
    )
    publish_report(
        "JPEG decode: OpenCV on the host against nvJPEG on the GPU", "benchmarks.bench_jpeg_decode", argv, body, args.out
    )


if __name__ == "__main__":
    main()
