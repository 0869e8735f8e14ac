import os
from pathlib import Path

from backends.contract import ENGINE_INPUT
from backends.engine_torch import TorchEngine
from backends.triton_model import log_info, model_parameter, serve_rows, stage_devices


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.devices = stage_devices(args)
        weights = os.path.join(model_dir, model_parameter(args, "weights_file"))
        self.engine = TorchEngine(model_parameter(args, "size"), Path(weights), self.devices.compute)
        log_info(f"{args['model_name']}: eager torch on {self.devices.compute}, outputs on {self.devices.outputs}")

    def _run(self, batch):
        outputs = self.engine(batch.to(self.devices.compute))
        return {name: tensor.to(self.devices.outputs) for name, tensor in outputs.items()}

    def execute(self, requests):
        return serve_rows(requests, ENGINE_INPUT, self._run)
