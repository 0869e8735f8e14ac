"""The RF-DETR-Seg engine on ONNX Runtime: the CPU stand-in for the TensorRT plan.

Same tensor contract (backends.contract): `input` [B, 3, R, R] -> `dets`, `labels`, `masks`.
Binding names are read from the file and checked, never assumed (rf-detr < 1.5 exported the
mask output unnamed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from backends.contract import DETS, ENGINE_INPUT, ENGINE_OUTPUTS, LABELS, EngineShape


class EngineContractError(ValueError):
    """The model file's inputs or outputs are not the engine contract."""


class OnnxEngine:
    def __init__(self, path: str | Path, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0: ONNX Runtime picks (all cores)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [ENGINE_INPUT] or sorted(outputs) != sorted(ENGINE_OUTPUTS):
            raise EngineContractError(
                f"{path}: expected input {[ENGINE_INPUT]} and outputs {list(ENGINE_OUTPUTS)}, "
                f"found inputs {inputs} and outputs {outputs}: re-export with tools.export_onnx"
            )
        shape = self.session.get_inputs()[0].shape
        self.resolution = int(shape[-1])
        self.dynamic_batch = not isinstance(shape[0], int)
        # Read from the file itself: a checkpoint may change Q or C from its size's defaults,
        # and configs and settings must say what the engine really returns.
        sizes = {o.name: o.shape for o in self.session.get_outputs()}
        self.shape = EngineShape(self.resolution, int(sizes[DETS][1]), int(sizes[LABELS][2]))

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """(B, 3, R, R) float32 -> {"dets": (B, Q, 4), "labels": (B, Q, C), "masks": (B, Q, h, w)}."""
        if self.dynamic_batch or len(batch) == 1:
            outputs = self.session.run(list(ENGINE_OUTPUTS), {ENGINE_INPUT: batch})
            return dict(zip(ENGINE_OUTPUTS, outputs))
        # A file exported with a static batch of 1 still serves a dynamic batch, row by row.
        rows = [self(batch[i : i + 1]) for i in range(len(batch))]
        return {name: np.concatenate([row[name] for row in rows]) for name in ENGINE_OUTPUTS}
