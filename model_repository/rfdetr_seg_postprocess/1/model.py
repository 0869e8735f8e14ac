import os
import time

import torch

from backends import contract as c
from backends.classes import ClassTable
from backends.host_heap import keep_freed_host_memory
from backends.postprocess import POSTPROCESS_IMPLS
from backends.postprocess_settings import PostprocessSettings
from backends.results import encode_result
from backends.triton_model import (
    freeze_startup_objects,
    input_dims,
    input_tensor,
    log_info,
    max_batch_size,
    model_parameter,
    profile_if_asked,
    request_flag,
    serve_batch,
    stage_devices,
    stage_impl,
)
from backends.warmup import WARM_UP_FRAMES, synthetic_engine_outputs

INPUTS = (c.DETS, c.LABELS, c.MASKS, c.IMAGE_SIZE)


class TritonPythonModel:
    def initialize(self, args):
        keep_freed_host_memory(args["model_name"])
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.settings = PostprocessSettings(
            num_select=int(model_parameter(args, "num_select")),
            score_threshold=float(model_parameter(args, "score_threshold")),
            classes=ClassTable.load(os.path.join(model_dir, c.CLASSES_FILE)),
            polygons=model_parameter(args, "polygons") == "yes",
        )
        self.devices = stage_devices(args)
        impl, self.postprocess = stage_impl(args, POSTPROCESS_IMPLS, self.devices)
        if impl != "reference":  # kernels compile per shape variant on first use
            start = time.perf_counter()
            self._warm_up(args)
            log_info(f"{args['model_name']}: warmed up in {time.perf_counter() - start:.1f} s")
        freeze_startup_objects(args["model_name"])
        profile_if_asked(args["model_name"])

    def _warm_up(self, args):
        num_queries, num_classes = input_dims(args, c.LABELS)
        mask_size = input_dims(args, c.MASKS)[-1]
        # A few detections and every query selected, at batch 1 and the largest batch, per size.
        for size in WARM_UP_FRAMES:
            for batch in (1, max_batch_size(args)):
                for confident in (4, num_queries):
                    outputs = synthetic_engine_outputs(
                        batch, num_queries, num_classes, mask_size, confident, self.devices.compute
                    )
                    self.postprocess(*outputs, [size] * batch, self.settings)

    def _read(self, request):
        item = {name: input_tensor(request, name) for name in INPUTS}
        # The request's choice, else the deployment's: polygons are the host's costliest step.
        item[c.POLYGONS_PARAMETER] = request_flag(request, c.POLYGONS_PARAMETER, self.settings.polygons)
        return item

    def _run(self, items):
        def batched(name):
            return torch.cat([item[name] for item in items]).to(self.devices.compute)

        sizes = [tuple(int(v) for v in size) for item in items for size in item[c.IMAGE_SIZE].tolist()]
        polygons = [item[c.POLYGONS_PARAMETER] for item in items for _ in range(len(item[c.IMAGE_SIZE]))]
        results = self.postprocess(batched(c.DETS), batched(c.LABELS), batched(c.MASKS), sizes, self.settings, polygons)
        # The results are host data (numpy): every output leaves on the CPU, batch axis of 1.
        return [{name: array[None] for name, array in encode_result(result).items()} for result in results]

    def execute(self, requests):
        return serve_batch(requests, self._read, self._run)
