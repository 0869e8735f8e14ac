import os
from pathlib import Path

import torch

from backends.contract import ENGINE_INPUT
from backends.engine_torch import TorchEngine
from backends.triton_model import (
    input_tensor,
    log_info,
    model_parameter,
    serve_batch,
    split_rows,
    stage_devices,
)


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.devices = stage_devices(args)
        weights = os.path.join(model_dir, model_parameter(args, "weights_file"))
        self.engine = TorchEngine(model_parameter(args, "size"), Path(weights), self.devices.compute)
        log_info(f"{args['model_name']}: eager torch on {self.devices.compute}, outputs on {self.devices.outputs}")

    def _run(self, inputs):
        outputs = self.engine(torch.cat(inputs).to(self.devices.compute))
        return split_rows({name: t.to(self.devices.outputs) for name, t in outputs.items()}, [len(x) for x in inputs])

    def execute(self, requests):
        return serve_batch(requests, lambda request: input_tensor(request, ENGINE_INPUT), self._run)
