import os

import torch

from backends import contract as c
from backends.classes import ClassTable
from backends.postprocess import POSTPROCESS_IMPLS
from backends.postprocess_settings import PostprocessSettings
from backends.results import encode_result
from backends.triton_model import input_tensor, model_parameter, serve_batch, stage_devices, stage_impl

INPUTS = (c.DETS, c.LABELS, c.MASKS, c.IMAGE_SIZE)


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.settings = PostprocessSettings(
            num_select=int(model_parameter(args, "num_select")),
            score_threshold=float(model_parameter(args, "score_threshold")),
            classes=ClassTable.load(os.path.join(model_dir, c.CLASSES_FILE)),
            polygons=model_parameter(args, "polygons") == "yes",
        )
        self.devices = stage_devices(args)
        self.postprocess = stage_impl(args, POSTPROCESS_IMPLS, self.devices)

    def _read(self, request):
        return {name: input_tensor(request, name) for name in INPUTS}

    def _run(self, items):
        def batched(name):
            return torch.cat([item[name] for item in items]).to(self.devices.compute)

        sizes = [tuple(int(v) for v in size) for item in items for size in item[c.IMAGE_SIZE].tolist()]
        results = self.postprocess(batched(c.DETS), batched(c.LABELS), batched(c.MASKS), sizes, self.settings)
        # The results are host data (numpy): every output leaves on the CPU, batch axis of 1.
        return [{name: array[None] for name, array in encode_result(result).items()} for result in results]

    def execute(self, requests):
        return serve_batch(requests, self._read, self._run)
