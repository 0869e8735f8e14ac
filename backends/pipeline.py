"""The whole pipeline in one process, reference stages only: the yardstick the served
ensemble is checked against (integration tests) and compared with (benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backends.engine_onnx import OnnxEngine
from backends.postprocess import postprocess_frame
from backends.postprocess_settings import PostprocessSettings
from backends.preprocess import preprocess_frame
from backends.results import SegmentationResult


class ReferencePipeline:
    def __init__(self, onnx_path: str | Path, settings: PostprocessSettings):
        self.engine = OnnxEngine(onnx_path)
        self.settings = settings

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        return preprocess_frame(torch.from_numpy(image_bgr), self.engine.resolution).numpy()

    def postprocess(self, outputs: dict[str, np.ndarray], image_size: tuple[int, int]) -> SegmentationResult:
        """One frame's engine outputs (batch of 1) -> its result."""
        dets, labels, masks = (torch.from_numpy(outputs[name][0]) for name in ("dets", "labels", "masks"))
        return postprocess_frame(dets, labels, masks, image_size, self.settings)

    def __call__(self, image_bgr: np.ndarray) -> SegmentationResult:
        return self.postprocess(self.engine(self.preprocess(image_bgr)), image_bgr.shape[:2])
