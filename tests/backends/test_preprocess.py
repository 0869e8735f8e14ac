"""The reference preprocess against the ops of rfdetr's RFDETR.predict(): to_tensor on the RGB
frame, F.resize(antialias=False), F.normalize(means, stds) (rfdetr/detr.py, predict); batches
of mixed sizes; the same ops on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.contract import MEANS, STDS
from backends.frames import InvalidImageError
from backends.preprocess import preprocess_batch, preprocess_frame
from backends.torchvision_cpu import ensure_torchvision_importable

ensure_torchvision_importable()
import torchvision.transforms.functional as TF  # noqa: E402, N812


def preprocess_reference(image_bgr: np.ndarray, resolution: int) -> np.ndarray:
    return preprocess_frame(torch.from_numpy(image_bgr), resolution).numpy()


def rfdetr_predict_preprocess(image_bgr: np.ndarray, resolution: int) -> np.ndarray:
    rgb = image_bgr[:, :, ::-1].copy()
    tensor = TF.to_tensor(rgb)
    resized = TF.resize(tensor, [resolution, resolution], antialias=False)
    return TF.normalize(resized.unsqueeze(0), list(MEANS), list(STDS)).numpy()


@pytest.mark.parametrize(
    "height, width",
    [(1, 1), (7, 13), (312, 312), (175, 312), (480, 640), (1080, 1920), (2160, 3840)],
)
def test_matches_rfdetr_predict(height, width):
    rng = np.random.default_rng(height * 10_000 + width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ours = preprocess_reference(image, 312)
    theirs = rfdetr_predict_preprocess(image, 312)
    assert ours.shape == (1, 3, 312, 312) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_bgr_becomes_rgb():
    blue = np.zeros((20, 30, 3), dtype=np.uint8)
    blue[..., 0] = 255  # BGR: channel 0 is blue
    out = preprocess_reference(blue, 24)[0]
    expected_blue = (1.0 - MEANS[2]) / STDS[2]
    np.testing.assert_allclose(out[2], expected_blue, atol=1e-6)
    np.testing.assert_allclose(out[0], (0.0 - MEANS[0]) / STDS[0], atol=1e-6)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (np.zeros((4, 4), np.uint8), "HxWx3"),
        (np.zeros((4, 4, 4), np.uint8), "HxWx3"),
        (np.zeros((0, 4, 3), np.uint8), "empty: 0x4"),
        (np.zeros((4, 0, 3), np.uint8), "empty: 4x0"),
    ],
)
def test_rejects_bad_frames_naming_the_problem(image, message):
    with pytest.raises(InvalidImageError, match=message):
        preprocess_reference(image, 312)


def test_a_batch_of_mixed_sizes_is_each_frame_alone():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(97, 131), (480, 640), (1, 1)]]
    batch = preprocess_batch([torch.from_numpy(f) for f in frames], 312, torch.device("cpu"))
    assert batch.shape == (3, 3, 312, 312)
    for row, frame in zip(batch, frames):
        assert torch.equal(row, preprocess_frame(torch.from_numpy(frame), 312)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares the ops on CUDA with the CPU")
@pytest.mark.parametrize("height, width", [(1, 1), (175, 312), (1080, 1920), (2160, 3840)])
def test_gpu_ops_equal_the_cpu_ops(height, width):
    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cpu = preprocess_batch([torch.from_numpy(image)], 312, torch.device("cpu"))
    gpu = preprocess_batch([torch.from_numpy(image)], 312, torch.device("cuda"))
    assert gpu.device.type == "cuda"
    # CUDA's bilinear kernel fuses multiply-adds, the CPU's does not: a few ULPs apart after the
    # division by std (seen on an H200: 1 of 292,032 elements off by 1.19e-6 at 1080p).
    difference = (gpu.cpu() - cpu).abs()
    assert difference.max() <= 2e-6, difference.max()
    assert (difference > 1e-6).sum() <= 10, int((difference > 1e-6).sum())
