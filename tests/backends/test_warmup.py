"""The warm-up's synthetic inputs give the stages real work: every confident query is detected."""

from __future__ import annotations

import torch

from backends.classes import ClassTable
from backends.postprocess import postprocess_batch
from backends.postprocess_settings import PostprocessSettings
from backends.warmup import WARM_UP_FRAME, synthetic_engine_outputs, synthetic_frames


def test_synthetic_frames_are_camera_frames():
    frames = synthetic_frames(2, torch.device("cpu"))
    assert [tuple(f.shape) for f in frames] == [(*WARM_UP_FRAME, 3)] * 2
    assert all(f.dtype == torch.uint8 for f in frames)


def test_every_confident_query_becomes_a_detection_with_a_mask():
    classes = ClassTable(("background", "thing", "other"))
    settings = PostprocessSettings(num_select=20, score_threshold=0.5, classes=classes)
    dets, labels, masks = synthetic_engine_outputs(2, 20, 3, 16, 5, torch.device("cpu"))
    assert (dets.shape, labels.shape, masks.shape) == ((2, 20, 4), (2, 20, 3), (2, 20, 16, 16))
    results = postprocess_batch(dets, labels, masks, [(64, 96)] * 2, settings)
    assert [len(r) for r in results] == [5, 5]
    assert all(len(p) > 0 for r in results for p in r.polygons)
