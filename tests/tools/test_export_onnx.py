"""tools.export_onnx on a real (small, locally made) fine-tuned checkpoint: its weights and its
class names must reach the ONNX file and the class table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from tools.build_repository import EngineShape
from tools.export_onnx import export
from tools.torchvision_cpu import ensure_torchvision_importable


@pytest.fixture(scope="module")
def fine_tuned_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A 2-class RF-DETR-Seg-Nano checkpoint in rfdetr's {"model", "args"} layout."""
    ensure_torchvision_importable()
    from rfdetr import RFDETRSegNano

    torch.manual_seed(123)  # not the export's seed: loading must matter
    model = RFDETRSegNano(pretrain_weights=None, num_classes=2).model.model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "fine-tuned.pth"
    torch.save({"model": model.state_dict(), "args": {"class_names": ["cat", "dog"], "num_classes": 2}}, path)
    return path, model


def test_checkpoint_weights_and_class_names_reach_the_export(fine_tuned_checkpoint, tmp_path, capsys):
    checkpoint, model = fine_tuned_checkpoint
    onnx_path, classes_path = export("nano", tmp_path, checkpoint)
    assert "RANDOM WEIGHTS" not in capsys.readouterr().err
    assert ClassTable.load(classes_path).names == ("cat", "dog", None)

    x = torch.randn(1, 3, 312, 312, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    dets, labels = session.run(["dets", "labels"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert labels.shape == (1, 100, 3)
    np.testing.assert_allclose(labels, expected["pred_logits"].numpy(), atol=1e-3)
    np.testing.assert_allclose(dets, expected["pred_boxes"].numpy(), atol=1e-3)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.pth"):
        export("nano", tmp_path, tmp_path / "no-such.pth")


def test_unknown_size_is_named(tmp_path):
    with pytest.raises(ValueError, match="'huge'"):
        export("huge", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_every_size_exports_with_the_contract_shapes(size, tmp_path):
    """build_engines.sh sizes TensorRT profiles from MODEL_SIZES: it must match real exports."""
    onnx_path, _ = export(size, tmp_path)
    expected = MODEL_SIZES[size]
    assert EngineShape.from_onnx(onnx_path) == EngineShape(expected.resolution, expected.num_queries, 91)
    onnx_path.unlink()  # 120-140 MB each
