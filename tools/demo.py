"""The main job: export RF-DETR-Seg, build the model repository for this host, start
tritonserver, stream a video through the ensemble and write the results.

    python -m tools.demo [--target auto] [--size nano] [--checkpoint X.pth] [--video in.mp4]

--target auto serves the `gpu` target (every stage on the GPU, the compiled torch engine) when
torch sees a CUDA device, else the `cpu` target (ONNX Runtime engine). Without --video a
synthetic clip of moving shapes is generated. Without --checkpoint the model has random
weights (loudly announced) and, unless --score-threshold is given, the threshold drops to 0.05
so that masks, RLE and polygons still flow through every stage. Every setting is checked before
anything is exported or started. Writes <out-dir>/results.jsonl, annotated.mp4, summary.json
and tritonserver.log.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from backends.contract import MODEL_SIZES
from backends.postprocess_settings import check_score_threshold
from clients.stream_video import stream_video
from clients.transports import TRANSPORT_KINDS, check_transport
from tools.build_repository import RepositorySpec, build_repository, check_readable, spec_from_files
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, ExportedModel, export, random_weights_export
from tools.make_sample_video import make_sample_video
from tools.targets import TARGETS, get_target
from tools.tritonserver import TritonServer

logger = logging.getLogger("demo")
# Engines the demo builds itself; a TensorRT plan comes from build_engines.sh.
DEMO_ENGINES = ("onnx", "torch")


def exported_model(size: str, checkpoint: Path | None, engines_dir: Path) -> ExportedModel:
    """The ONNX, class table and weights: re-exported for a checkpoint, reused for random weights."""
    if checkpoint is None:
        return random_weights_export(size, engines_dir / "random")
    return export(size, engines_dir / "checkpoint", checkpoint)


def resolve_target(name: str) -> str:
    if name != "auto":
        return get_target(name).name
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="auto", choices=["auto", *TARGETS])
    parser.add_argument("--engine", choices=DEMO_ENGINES, help="default: the target's (cpu: onnx, gpu: torch)")
    parser.add_argument("--size", default="nano", choices=list(MODEL_SIZES))
    parser.add_argument("--checkpoint", type=Path, help="local RF-DETR-Seg .pth (random weights without it)")
    parser.add_argument("--video", help="input video file or stream URL; a synthetic one is generated without it")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--score-threshold", type=float)
    parser.add_argument(
        "--transport", default="system_shm", choices=TRANSPORT_KINDS, help="cuda needs a GPU and cuda-bindings"
    )
    # cpu: 1, since every stage competes for the same cores and frames in flight only add
    # contention (benchmarks/results/cpu/pipeline.md); gpu: 4, so batches can form.
    parser.add_argument("--depth", type=int, help="frames in flight (default: cpu 1, gpu 4)")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    args = parser.parse_args(argv)
    try:
        args.target = resolve_target(args.target)
        target = get_target(args.target)
        if args.engine is not None and args.engine not in target.engines:
            raise ValueError(f"target {args.target} serves the engines {list(target.engines)}, not {args.engine!r}")
        if args.checkpoint is not None:
            check_readable(args.checkpoint, "checkpoint")
        if args.video is not None and "://" not in args.video:
            check_readable(Path(args.video), "video")
        if args.score_threshold is not None:
            check_score_threshold(args.score_threshold)
        if args.depth is not None and args.depth < 1:
            raise ValueError(f"--depth must be >= 1, got {args.depth}")
        check_transport(args.transport)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (docker stop, a timeout) as an exit, so the `with` blocks stop the server and its
    MPS daemon on the way out: death on the spot left both running, each in a session of its own.
    While they stop, a further SIGTERM is ignored. (While frames stream, clients.signals takes
    SIGTERM as "stop sending" and gives this handler back afterwards.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def repository_spec(args: argparse.Namespace, exported: ExportedModel) -> RepositorySpec:
    """What the demo serves: the target and engine asked for, the score threshold (0.5 with a
    checkpoint, the random weights' one without), the JPEG ensemble when frames go as JPEG."""
    threshold = args.score_threshold
    if threshold is None:
        threshold = 0.5 if args.checkpoint else RANDOM_WEIGHTS_THRESHOLD
    return spec_from_files(
        args.target, args.engine, exported.onnx, threshold, weights=exported.weights, jpeg=args.transport == "jpeg"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    target = get_target(args.target)
    exported = exported_model(args.size, args.checkpoint, args.build_dir / "engines")
    spec = repository_spec(args, exported)
    if args.checkpoint is None:
        logger.warning("RANDOM WEIGHTS: detections are meaningless; score threshold %.2f", spec.postprocess.score_threshold)
    repository = build_repository(spec, args.build_dir / "model_repository")
    logger.info("target %s, engine %s: %s", target.name, spec.engine, repository)

    video = args.video
    if video is None:
        video = args.build_dir / "sample.mp4"
        make_sample_video(video)
        logger.info("generated sample video %s", video)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    depth = args.depth or (4 if target.device == "cuda" else 1)
    log_path = args.out_dir / "tritonserver.log"
    with TritonServer.for_target(repository, log_path, target) as server:
        logger.info("tritonserver ready on %s, %s (log: %s)", server.grpc_url, server.options_text(), server.log_path)
        return stream_video(
            os.fspath(video), server.grpc_url, transport=args.transport, depth=depth, out_dir=args.out_dir
        )


if __name__ == "__main__":
    sys.exit(main())
