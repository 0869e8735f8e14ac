"""backends.engine_torch: rfdetr's eager model with the ONNX export's contract, on the same weights
as the ONNX file (tools.export_onnx writes them beside it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.engine_onnx import OnnxEngine
from backends.engine_torch import TorchEngine
from backends.torchvision_cpu import ensure_torchvision_importable

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cpu_engine(nano_export) -> TorchEngine:
    """The seeded random-weights Nano (tests/conftest.py), from the weights beside its ONNX."""
    return TorchEngine("nano", nano_export.weights, CPU)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """Two different normalized frames."""
    return torch.randn(2, 3, 312, 312, generator=torch.Generator().manual_seed(0))


def max_abs_diffs(a: dict, b: dict) -> dict[str, float]:
    return {name: float(np.abs(np.asarray(a[name]) - np.asarray(b[name])).max()) for name in a}


def test_matches_the_onnx_engine_on_the_same_weights(nano_export, cpu_engine, batch):
    assert (cpu_engine.resolution, cpu_engine.num_queries, cpu_engine.num_classes) == (312, 100, 91)
    assert cpu_engine.device == CPU
    got = cpu_engine(batch)
    expected = OnnxEngine(nano_export.onnx)(batch.numpy())
    assert {n: tuple(t.shape) for n, t in got.items()} == {n: a.shape for n, a in expected.items()}
    assert got["masks"].shape == (2, 100, 78, 78)
    assert all(t.device == CPU and t.dtype == torch.float32 for t in got.values())
    diffs = max_abs_diffs({n: t.numpy() for n, t in got.items()}, expected)
    # Measured here (torch 2.13 CPU, onnxruntime 1.31): dets 0.0, labels 2.4e-6, masks 7.3e-5
    # (mask logits reach about 33).
    assert diffs["dets"] < 1e-5, diffs
    assert diffs["labels"] < 1e-4, diffs
    assert diffs["masks"] < 1e-3, diffs


def test_loads_a_fine_tuned_checkpoint_with_its_class_count(tmp_path):
    ensure_torchvision_importable()
    from rfdetr import RFDETRSegNano

    torch.manual_seed(123)  # not the engine's seed: loading must matter
    model = RFDETRSegNano(pretrain_weights=None, num_classes=2).model.model.eval()
    checkpoint = tmp_path / "fine-tuned.pth"
    args = {"class_names": ["cat", "dog"], "num_classes": 2}
    torch.save({"model": model.state_dict(), "args": args}, checkpoint)

    engine = TorchEngine("nano", str(checkpoint), "cpu")
    assert (engine.num_queries, engine.num_classes) == (100, 3)
    x = torch.randn(1, 3, 312, 312, generator=torch.Generator().manual_seed(1))
    got = engine(x)
    with torch.no_grad():
        expected = model(x)  # rfdetr's regular forward: same weights, other code
    assert got["labels"].shape == (1, 100, 3)
    # Measured: identical (max abs diff 0.0) for all three outputs on CPU.
    for name, key in (("dets", "pred_boxes"), ("labels", "pred_logits"), ("masks", "pred_masks")):
        torch.testing.assert_close(got[name], expected[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (torch.zeros(1, 3, 312, 312, dtype=torch.float64), "dtype torch.float64"),
        (torch.zeros(1, 3, 320, 320), r"shape \[1, 3, 320, 320\]"),
        (torch.zeros(3, 312, 312), r"shape \[3, 312, 312\]"),
        (torch.zeros(0, 3, 312, 312), r"shape \[0, 3, 312, 312\]"),
        (np.zeros((1, 3, 312, 312), np.float32), "got ndarray"),
    ],
)
def test_bad_inputs_are_named(cpu_engine, bad, named):
    with pytest.raises(ValueError, match=named):
        cpu_engine(bad)


def test_missing_weights_and_unknown_size_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.pth"):
        TorchEngine("nano", tmp_path / "no-such.pth", CPU)
    with pytest.raises(ValueError, match="'huge'"):
        TorchEngine("huge", None, CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(nano_export, cpu_engine, batch):
    engine = TorchEngine("nano", nano_export.weights, torch.device("cuda"))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    got = engine(batch)  # a CPU batch: the engine moves it
    assert all(t.device.type == "cuda" for t in got.values())
    expected = cpu_engine(batch)
    diffs = max_abs_diffs({n: t.cpu().numpy() for n, t in got.items()}, expected)
    # Measured on an H200 (torch 2.11+cu130): dets 0.0, labels 4.3e-6, masks 8.2e-5, mask IoU
    # 1.0. With TF32 on (what importing rfdetr leaves) it was dets 0.81, masks 22, IoU 0.948.
    assert diffs["dets"] < 1e-4, diffs
    assert diffs["labels"] < 1e-3, diffs
    assert diffs["masks"] < 1e-2, diffs
    on_gpu, on_cpu = got["masks"].cpu() > 0, expected["masks"] > 0
    iou = (on_gpu & on_cpu).sum() / (on_gpu | on_cpu).sum()
    assert iou >= 0.999, iou
