"""The warm-up's synthetic inputs give the stages real work: every confident query is detected."""

from __future__ import annotations

import torch

from backends.classes import ClassTable
from backends.postprocess import postprocess_batch
from backends.postprocess_settings import PostprocessSettings
from backends.rle_strings_kernel import chunks_for
from backends.warmup import WARM_UP_FRAMES, synthetic_engine_outputs, synthetic_frames


def test_synthetic_frames_are_camera_frames():
    frames = synthetic_frames(2, (36, 64), torch.device("cpu"))
    assert [tuple(f.shape) for f in frames] == [(36, 64, 3)] * 2
    assert all(f.dtype == torch.uint8 for f in frames)


def test_the_warm_up_sizes_compile_the_strings_of_every_camera_from_240p_to_4k():
    cameras = [(240, 320), (360, 640), (720, 1280), (1080, 1920), (2160, 3840)]
    assert {chunks_for(h * w) for h, w in WARM_UP_FRAMES} == {chunks_for(h * w) for h, w in cameras}


def test_every_confident_query_becomes_a_detection_with_a_mask():
    classes = ClassTable(("background", "thing", "other"))
    settings = PostprocessSettings(num_select=20, score_threshold=0.5, classes=classes)
    dets, labels, masks = synthetic_engine_outputs(2, 20, 3, 16, 5, torch.device("cpu"))
    assert (dets.shape, labels.shape, masks.shape) == ((2, 20, 4), (2, 20, 3), (2, 20, 16, 16))
    results = postprocess_batch(dets, labels, masks, [(64, 96)] * 2, settings)
    assert [len(r) for r in results] == [5, 5]
    assert all(len(p) > 0 for r in results for p in r.polygons)
