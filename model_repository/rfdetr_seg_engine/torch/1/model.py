from pathlib import Path

from backends.batch_buckets import bucket_sizes
from backends.contract import ENGINE_INPUT
from backends.engine_compiled import COMPILE_CACHE_FILE, CompiledEngine
from backends.engine_torch import TorchEngine
from backends.host_heap import keep_freed_host_memory
from backends.triton_model import (
    freeze_startup_objects,
    log_info,
    max_batch_size,
    model_parameter,
    profile_if_asked,
    serve_rows,
    stage_devices,
)


class TritonPythonModel:
    def initialize(self, args):
        keep_freed_host_memory(args["model_name"])
        model_dir = Path(args["model_repository"]) / args["model_version"]
        self.devices = stage_devices(args)
        size = model_parameter(args, "size")
        weights = model_dir / model_parameter(args, "weights_file")
        name = args["model_name"]
        if self.devices.compute.type == "cuda":
            cache = model_dir / COMPILE_CACHE_FILE
            log_info(
                f"{name}: compiling FP16 CUDA graphs ({'from ' + cache.name if cache.is_file() else 'no cache: minutes'})"
            )
            buckets = bucket_sizes(max_batch_size(args))
            self.engine = CompiledEngine(size, weights, self.devices.compute, buckets, cache)
            log_info(f"{name}: CUDA graphs for batches {self.engine.buckets}, seconds each: {self.engine.prepare_s}")
        else:
            self.engine = TorchEngine(size, weights, self.devices.compute)
            log_info(f"{name}: eager fp32 torch on {self.devices.compute}")
        log_info(f"{name}: outputs on {self.devices.outputs}")
        freeze_startup_objects(name)
        profile_if_asked(name)

    def _run(self, batch):
        outputs = self.engine(batch)
        return {name: tensor.to(self.devices.outputs) for name, tensor in outputs.items()}

    def execute(self, requests):
        return serve_rows(requests, ENGINE_INPUT, self._run, self.devices.compute)
