"""The preprocess stage both preprocess models serve: JPEG files through a decoder give what the
decoded frames give, one row and one size per request."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch

from backends.contract import ENGINE_INPUT, IMAGE_SIZE
from backends.jpeg_decode import decode_jpegs_opencv
from backends.jpeg_files import encode_jpeg
from backends.preprocess import preprocess_frame
from backends.preprocess_stage import PreprocessStage
from tools.make_sample_video import render_frames


def stage_args(resolution: int = 64) -> dict:
    """What tritonserver gives a cpu target preprocess instance's initialize (the parts read)."""
    parameters = {"resolution": str(resolution), "impl": "reference", "device": "cpu", "FORCE_CPU_ONLY_INPUT_TENSORS": "yes"}
    config = {"max_batch_size": 8, "parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return {"model_name": "rfdetr_seg_preprocess", "model_config": json.dumps(config)}


def test_rows_are_each_frames_engine_input_and_size():
    frames = [torch.from_numpy(next(render_frames(1, w, h))) for w, h in [(160, 90), (31, 17)]]
    rows = PreprocessStage(stage_args()).run(frames)
    assert [r[IMAGE_SIZE].tolist() for r in rows] == [[[90, 160]], [[17, 31]]]
    for row, frame in zip(rows, frames, strict=True):
        assert torch.equal(row[ENGINE_INPUT], preprocess_frame(frame, 64))


def test_jpeg_files_give_what_their_decoded_frames_give():
    frames = [torch.from_numpy(next(render_frames(1, w, h))) for w, h in [(160, 90), (31, 17)]]
    files = [torch.from_numpy(encode_jpeg(frame.numpy())) for frame in frames]
    from_files = PreprocessStage(stage_args(), decode_jpegs_opencv).run(files)
    decoded = [torch.from_numpy(cv2.imdecode(f.numpy(), cv2.IMREAD_COLOR)) for f in files]
    from_frames = PreprocessStage(stage_args()).run(decoded)
    for a, b in zip(from_files, from_frames, strict=True):
        assert torch.equal(a[ENGINE_INPUT], b[ENGINE_INPUT]) and torch.equal(a[IMAGE_SIZE], b[IMAGE_SIZE])
    assert not np.array_equal(decoded[0].numpy(), frames[0].numpy())  # JPEG is lossy: decoded, not passed through
