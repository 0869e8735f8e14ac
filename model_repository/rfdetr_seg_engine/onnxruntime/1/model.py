import os

import numpy as np
import triton_python_backend_utils as pb_utils

from backends.contract import ENGINE_INPUT, ENGINE_OUTPUTS
from backends.engine_onnx import OnnxEngine
from backends.triton_model import input_array, model_parameter, output_tensor


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.engine = OnnxEngine(os.path.join(model_dir, model_parameter(args, "onnx_file")))

    def execute(self, requests):
        # The dynamic batcher hands over several requests: one engine run for all of them,
        # as the TensorRT plan does.
        inputs = [input_array(r, ENGINE_INPUT) for r in requests]
        try:
            outputs = self.engine(np.concatenate(inputs))
        except Exception as error:  # noqa: BLE001 - every request of the batch learns why
            message = f"engine failed on a batch of {len(inputs)}: {type(error).__name__}: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        bounds = np.cumsum([0] + [len(x) for x in inputs])
        return [
            pb_utils.InferenceResponse(
                output_tensors=[output_tensor(name, outputs[name][lo:hi]) for name in ENGINE_OUTPUTS]
            )
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
