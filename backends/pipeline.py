"""The whole pipeline in one process, reference stages only: the yardstick the served
ensemble is checked against (integration tests) and compared with (benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.classes import ClassTable
from backends.engine_onnx import OnnxEngine
from backends.postprocess import SegmentationResult, postprocess_reference
from backends.preprocess import preprocess_reference


class ReferencePipeline:
    def __init__(self, onnx_path: str | Path, classes: ClassTable, num_select: int, score_threshold: float):
        self.engine = OnnxEngine(onnx_path)
        self.classes = classes
        self.num_select = num_select
        self.score_threshold = score_threshold

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        return preprocess_reference(image_bgr, self.engine.resolution)

    def postprocess(self, outputs: dict[str, np.ndarray], image_size: tuple[int, int]) -> SegmentationResult:
        """One frame's engine outputs (batch of 1) -> its result."""
        return postprocess_reference(
            outputs["dets"][0],
            outputs["labels"][0],
            outputs["masks"][0],
            image_size,
            self.num_select,
            self.score_threshold,
            self.classes,
        )

    def __call__(self, image_bgr: np.ndarray) -> SegmentationResult:
        return self.postprocess(self.engine(self.preprocess(image_bgr)), image_bgr.shape[:2])
