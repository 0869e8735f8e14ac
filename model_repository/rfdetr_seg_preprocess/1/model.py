import torch

from backends.contract import ENGINE_INPUT, IMAGE, IMAGE_SIZE
from backends.errors import InvalidRequestError
from backends.frames import check_frame
from backends.host_heap import keep_freed_host_memory
from backends.preprocess import PREPROCESS_IMPLS
from backends.triton_model import (
    freeze_startup_objects,
    input_tensor,
    max_batch_size,
    model_parameter,
    profile_if_asked,
    serve_batch,
    split_rows,
    stage_devices,
    stage_impl,
)
from backends.warmup import WARM_UP_FRAMES, synthetic_frames


class TritonPythonModel:
    def initialize(self, args):
        keep_freed_host_memory(args["model_name"])
        self.resolution = int(model_parameter(args, "resolution"))
        self.devices = stage_devices(args)
        impl, self.preprocess = stage_impl(args, PREPROCESS_IMPLS, self.devices)
        if impl != "reference":  # kernels compile on first use: not on the first requests
            for size in WARM_UP_FRAMES:
                for batch in (1, max_batch_size(args)):
                    frames = synthetic_frames(batch, size, self.devices.compute)
                    self.preprocess(frames, self.resolution, self.devices.compute)
        freeze_startup_objects(args["model_name"])
        profile_if_asked(args["model_name"])

    def _read(self, request):
        image = input_tensor(request, IMAGE)
        if len(image) != 1:
            raise InvalidRequestError(f"send one frame per request ([1, H, W, 3]), got {len(image)}")
        # Checked per request, so a bad frame fails alone, before the batched call.
        check_frame(image.shape[1:], image.dtype)
        return image[0]

    def _run(self, frames):
        batch = self.preprocess(frames, self.resolution, self.devices.compute).to(self.devices.outputs)
        # Frame sizes are host metadata: they stay on the CPU whatever the target.
        sizes = torch.tensor([frame.shape[:2] for frame in frames], dtype=torch.int32)
        return split_rows({ENGINE_INPUT: batch, IMAGE_SIZE: sizes}, [1] * len(frames))

    def execute(self, requests):
        return serve_batch(requests, self._read, self._run)
