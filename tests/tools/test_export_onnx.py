"""tools.export_onnx on a real (small, locally made) fine-tuned checkpoint: its weights and its
class names must reach the ONNX file, the class table and the weights file beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES, EngineShape
from tools.build_repository import engine_shape_from_onnx
from tools.export_onnx import export, output_paths, random_weights_export
from backends.torchvision_cpu import ensure_torchvision_importable


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
    exported = export("nano", tmp_path, checkpoint)
    assert "RANDOM WEIGHTS" not in capsys.readouterr().err
    assert exported == output_paths(tmp_path, "nano")
    assert ClassTable.load(exported.classes).names == ("cat", "dog", None)

    x = torch.randn(1, 3, 312, 312, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    dets, labels = session.run(["dets", "labels"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert labels.shape == (1, 100, 3)
    np.testing.assert_allclose(labels, expected["pred_logits"].numpy(), atol=1e-3)
    np.testing.assert_allclose(dets, expected["pred_boxes"].numpy(), atol=1e-3)
    assert_weights_file_holds(exported.weights, model)


def assert_weights_file_holds(path: Path, model: torch.nn.Module) -> None:
    """The .pth beside the ONNX is the model it exported, in the layout pretrain_weights= loads."""
    saved = torch.load(path, weights_only=True)
    assert saved["args"]["class_names"] == ["cat", "dog"] and saved["args"]["num_classes"] == 2
    expected = model.state_dict()
    assert saved["model"].keys() == expected.keys()
    assert all(torch.equal(saved["model"][k], expected[k]) for k in expected)

    from rfdetr import RFDETRSegNano

    reloaded = RFDETRSegNano(pretrain_weights=str(path))
    assert reloaded.class_names == ["cat", "dog"]
    state = reloaded.model.model.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_a_random_weights_export_is_reused_only_when_complete(tmp_path, monkeypatch):
    paths = output_paths(tmp_path, "nano")
    for path in (paths.onnx, paths.classes):  # an export from before the weights were written
        path.write_text("x")
    calls = []

    def fake_export(size: str, out_dir: Path):
        calls.append(size)
        return paths

    monkeypatch.setattr("tools.export_onnx.export", fake_export)
    assert random_weights_export("nano", tmp_path) == paths and calls == ["nano"]
    paths.weights.write_text("x")
    assert random_weights_export("nano", tmp_path) == paths and calls == ["nano"]


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
    exported = export(size, tmp_path)
    expected = MODEL_SIZES[size]
    assert engine_shape_from_onnx(exported.onnx) == EngineShape(expected.resolution, expected.num_queries, 91)
    exported.onnx.unlink()  # 120-140 MB each, and the weights about as much
    exported.weights.unlink()
