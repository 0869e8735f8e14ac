import os

import torch

from backends.contract import ENGINE_INPUT
from backends.engine_onnx import OnnxEngine
from backends.host_heap import keep_freed_host_memory
from backends.triton_model import (
    freeze_startup_objects,
    model_parameter,
    profile_if_asked,
    serve_rows,
)


class TritonPythonModel:
    def initialize(self, args):
        keep_freed_host_memory(args["model_name"])
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.engine = OnnxEngine(os.path.join(model_dir, model_parameter(args, "onnx_file")))
        freeze_startup_objects(args["model_name"])
        profile_if_asked(args["model_name"])

    def _run(self, batch):
        # ONNX Runtime takes numpy: the CPU engine's only copy, one per batch.
        outputs = self.engine(batch.cpu().numpy())
        return {name: torch.from_numpy(array) for name, array in outputs.items()}

    def execute(self, requests):
        return serve_rows(requests, ENGINE_INPUT, self._run, torch.device("cpu"))
