"""What both preprocess models serve (the raw frames' and the JPEG files'): the target's preprocess
over one batch of frames of any sizes, each request's engine input row and frame size out.

Importable anywhere; backends.triton_model's helpers touch triton_python_backend_utils only when
called inside the stub. The model.py files stay a request reader each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from backends.contract import ENGINE_INPUT, IMAGE_SIZE
from backends.host_heap import keep_freed_host_memory
from backends.jpeg_decode import JPEG_DECODERS
from backends.jpeg_files import encode_jpeg
from backends.preprocess import PREPROCESS_IMPLS
from backends.triton_model import (
    freeze_startup_objects,
    max_batch_size,
    model_parameter,
    profile_if_asked,
    split_rows,
    stage_devices,
    stage_impl,
)
from backends.warmup import WARM_UP_FRAMES, synthetic_frames

Decoder = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]  # files -> BGR frames


class PreprocessStage:
    """One model instance's preprocess: its resolution, devices and implementation (`impl`), and
    for the JPEG ensemble's stage its decoder (backends.jpeg_decode), which runs first."""

    def __init__(self, args: dict, decoder: Decoder | None = None):
        self.resolution = int(model_parameter(args, "resolution"))
        self.devices = stage_devices(args)
        self.impl, self.preprocess = stage_impl(args, PREPROCESS_IMPLS, self.devices)
        self.max_batch_size = max_batch_size(args)
        self.decoder = decoder

    def run(self, items: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Frames (JPEG files, with a decoder) -> per frame {engine input: [1, 3, R, R], image
        size: [1, 2]}: one batched call for them all."""
        frames = items if self.decoder is None else self.decoder(items, self.devices.compute)
        batch = self.preprocess(frames, self.resolution, self.devices.compute).to(self.devices.outputs)
        # Frame sizes are host metadata: they stay on the CPU whatever the target.
        sizes = torch.tensor([frame.shape[:2] for frame in frames], dtype=torch.int32)
        return split_rows({ENGINE_INPUT: batch, IMAGE_SIZE: sizes}, [1] * len(frames))

    def warm_up(self) -> None:
        """On a GPU, runs synthetic frames (JPEG files of them, with a decoder) of each warm-up
        size, alone and as a full batch: kernels compile, and nvJPEG starts, before the first
        request."""
        if self.devices.compute.type != "cuda":
            return
        for size in WARM_UP_FRAMES:
            for batch in (1, self.max_batch_size):
                if self.decoder is None:
                    self.run(synthetic_frames(batch, size, self.devices.compute))
                else:
                    frames = synthetic_frames(batch, size, torch.device("cpu"))
                    self.run([torch.from_numpy(encode_jpeg(frame.numpy())) for frame in frames])


def start_preprocess_stage(args: dict, decoder: Decoder | None = None) -> PreprocessStage:
    """A preprocess model's initialize: the stub's heap settings, the stage, its warm-up, then
    its startup objects left out of the garbage collector's full collections."""
    keep_freed_host_memory(args["model_name"])
    stage = PreprocessStage(args, decoder)
    stage.warm_up()
    freeze_startup_objects(args["model_name"])
    profile_if_asked(args["model_name"])
    return stage


def jpeg_decoder(args: dict) -> Decoder:
    """The decoder the config's `decoder` parameter names (backends.jpeg_decode)."""
    name = model_parameter(args, "decoder")
    if name not in JPEG_DECODERS:
        raise ValueError(f"config.pbtxt of {args['model_name']}: unknown decoder {name!r}; choose one of {list(JPEG_DECODERS)}")
    return JPEG_DECODERS[name]
