"""The main job: export RF-DETR-Seg, build the model repository, start tritonserver, stream a
video through the ensemble over gRPC and write the results.

    python -m tools.demo [--size nano] [--checkpoint X.pth] [--video in.mp4] [--out-dir outputs]

Without --video a synthetic clip of moving shapes is generated. Without --checkpoint the
model has random weights (loudly announced) and, unless --score-threshold is given, the
threshold drops to 0.05 so that masks, RLE and polygons still flow through every stage.
Writes <out-dir>/results.jsonl, annotated.mp4, summary.json and tritonserver.log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from clients import stream_video
from tools.build_repository import EngineShape, RepositorySettings, build_repository
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD, export, random_weights_export
from tools.make_sample_video import make_sample_video
from tools.tritonserver import TritonServer

logger = logging.getLogger("demo")


def exported_engine(size: str, checkpoint: Path | None, engines_dir: Path) -> tuple[Path, Path]:
    """The ONNX + class table: re-exported for a checkpoint, reused for random weights."""
    if checkpoint is None:
        return random_weights_export(size, engines_dir / "random")
    return export(size, engines_dir / "checkpoint", checkpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="nano", choices=sorted(MODEL_SIZES))
    parser.add_argument("--checkpoint", type=Path, help="local RF-DETR-Seg .pth (random weights without it)")
    parser.add_argument("--video", type=Path, help="input video; a synthetic one is generated without it")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--score-threshold", type=float)
    parser.add_argument("--transport", default="system_shm", choices=["grpc", "system_shm"])
    # 1: with the CPU engine every stage competes for the same cores, so frames in flight only
    # add contention (benchmarks/results/cpu/pipeline.md); raise it when the engine is a GPU's.
    parser.add_argument("--depth", type=int, default=1, help="frames in flight")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    onnx_path, classes_path = exported_engine(args.size, args.checkpoint, args.build_dir / "engines")
    threshold = args.score_threshold
    if threshold is None:
        threshold = 0.5 if args.checkpoint else RANDOM_WEIGHTS_THRESHOLD
    if args.checkpoint is None:
        logger.warning("RANDOM WEIGHTS: detections are meaningless; score threshold %.2f", threshold)
    classes = ClassTable.load(classes_path)
    settings = RepositorySettings(shape=EngineShape.from_onnx(onnx_path), score_threshold=threshold)
    repository = build_repository(onnx_path, classes, settings, args.build_dir / "model_repository")

    video = args.video
    if video is None:
        video = args.build_dir / "sample.mp4"
        make_sample_video(video)
        logger.info("generated sample video %s", video)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with TritonServer(repository, args.out_dir / "tritonserver.log") as server:
        logger.info("tritonserver ready on %s (log: %s)", server.grpc_url, server.log_path)
        return stream_video.main(
            [
                "--video", str(video),
                "--url", server.grpc_url,
                "--transport", args.transport,
                "--depth", str(args.depth),
                "--out-dir", str(args.out_dir),
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
