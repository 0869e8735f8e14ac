from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backends.engine_onnx import EngineContractError, OnnxEngine


def test_contract_and_batching_on_the_real_export(nano_export):
    engine = OnnxEngine(nano_export.onnx)
    assert engine.resolution == 312 and engine.dynamic_batch
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(2, 3, 312, 312)).astype(np.float32)
    both = engine(batch)
    assert both["dets"].shape == (2, 100, 4)
    assert both["labels"].shape == (2, 100, 91)
    assert both["masks"].shape == (2, 100, 78, 78)
    second = engine(batch[1:])
    for name in ("dets", "labels", "masks"):
        np.testing.assert_allclose(both[name][1], second[name][0], atol=1e-4)


def test_rejects_a_file_with_other_tensor_names(tmp_path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("4245", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["4245"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "wrong.onnx")
    with pytest.raises(EngineContractError, match="expected input"):
        OnnxEngine(tmp_path / "wrong.onnx")
