"""Where and how each stage runs, per deployment target: the one table the repository builder
renders configs from.

- cpu: today's CPU host: every stage on CPU tensors, the ONNX Runtime engine (or eager torch).
- gpu: an x86 GPU server (T4, H100): every python stage computes on the GPU and takes and gives
  GPU tensors (FORCE_CPU_ONLY_INPUT_TENSORS "no"), so tensors stay on the device between stages.
- jetson: the python backend there takes no GPU tensors and runs no KIND_GPU python instances
  (anchors.md: server #7667, #8183), so python stages are KIND_CPU with CPU tensors at the model
  boundary, and do their work on the GPU inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

KIND_CPU, KIND_GPU = "KIND_CPU", "KIND_GPU"
# Engines: rfdetr's ONNX on ONNX Runtime (python backend, CPU), rfdetr's own model in PyTorch
# (python backend, the target's device: FP16 CUDA graphs on a GPU, eager fp32 on the CPU), a
# TensorRT plan (tensorrt_plan, GPU).
ENGINES = ("onnx", "torch", "tensorrt")


@dataclass(frozen=True)
class StagePlan:
    """One stage's serving settings."""

    instance_count: int
    max_batch_size: int
    queue_delay_us: int  # how long the dynamic batcher may hold a request to grow a batch


@dataclass(frozen=True)
class Target:
    name: str
    device: str  # where python stages compute: "cpu" or "cuda"
    gpu_tensors: bool  # python models take and give GPU tensors
    engines: tuple[str, ...]  # the first is the default
    # The backends implementation each python stage runs (its `impl` parameter): "reference"
    # (torch ops, any device) or "triton" (the fused Triton-lang kernels, GPU).
    preprocess_impl: str
    postprocess_impl: str
    # How the JPEG ensemble's preprocess decodes (backends.jpeg_decode.JPEG_DECODERS).
    jpeg_decoder: str
    preprocess: StagePlan
    engine: StagePlan
    postprocess: StagePlan
    # GPU tensors a python model outputs are copied into this server pool (python_backend PR
    # #293); past it the backend falls back to slower CUDA IPC. Sized for a batch of 32 Nano
    # engine outputs (2.5 MB a frame) with room for the larger sizes.
    cuda_memory_pool_bytes: int = 0
    # The server and its stubs as clients of a CUDA MPS daemon of their own (tools.cuda_mps), so
    # that the stages' GPU work is not time-sliced between their contexts. Off for jetson: never
    # measured on an Orin.
    cuda_mps: bool = False

    def server_args(self) -> tuple[str, ...]:
        """tritonserver options the target needs."""
        if not self.cuda_memory_pool_bytes:
            return ()
        return (f"--cuda-memory-pool-byte-size=0:{self.cuda_memory_pool_bytes}",)

    @property
    def python_instance_kind(self) -> str:
        return KIND_GPU if self.gpu_tensors else KIND_CPU

    def engine_instance_kind(self, engine: str) -> str:
        return KIND_GPU if engine == "tensorrt" else self.python_instance_kind

    def engine_device(self, engine: str) -> str:
        return "cpu" if engine == "onnx" else self.device


TARGETS = {
    # Two cores: no queue delay for pre/post (a batch costs what its frames cost one by one);
    # the engine waits a little for a batch, which ONNX Runtime runs in one call.
    "cpu": Target(
        name="cpu",
        device="cpu",
        gpu_tensors=False,
        engines=("onnx", "torch"),
        preprocess_impl="reference",
        postprocess_impl="reference",
        jpeg_decoder="opencv",
        preprocess=StagePlan(1, 8, 0),
        engine=StagePlan(1, 8, 2000),
        postprocess=StagePlan(1, 8, 0),
    ),
    # The engine's cost per frame falls with the batch (compiled Nano on an H200: 1.19 ms at
    # batch 1, 7.0 ms at 32): batches up to 32; pre/post take what is queued. The engine waits
    # 250 us for a second request: inside the ensemble the preprocess instances hand it frames
    # one by one, and a 1 ms wait was a millisecond added to every lone frame. Side by side on
    # one H200 over system shm, 250 against 1000 us: the ensemble 484 against 377 requests/s at
    # concurrency 4, 872 against 801 at 32; 0 us lost the engine alone 19 % at 16
    # (benchmarks/results/h200/perf-analyzer/queue-delay.md).
    # Three preprocess and three postprocess instances: their time is host work (1080p frames
    # copied in and up, contours traced), which runs in parallel across stub processes. 1080p
    # over system shm at concurrency 32 on the H200 host: the ensemble served 225 / 403 / 537
    # frames/s with 1 / 2 / 3 of each, the engine alone 468
    # (benchmarks/results/h200/perf-analyzer/instances.md).
    "gpu": Target(
        name="gpu",
        device="cuda",
        gpu_tensors=True,
        engines=("torch", "tensorrt"),
        preprocess_impl="triton",
        postprocess_impl="triton",
        jpeg_decoder="nvjpeg",
        preprocess=StagePlan(3, 32, 0),
        engine=StagePlan(1, 32, 250),
        postprocess=StagePlan(3, 32, 0),
        cuda_memory_pool_bytes=1 << 30,
        cuda_mps=True,
    ),
    # An Orin has 8-16 GB shared with the CPU and each torch stub costs ~1 GB (server #4457):
    # one instance each, smaller batches.
    "jetson": Target(
        name="jetson",
        device="cuda",
        gpu_tensors=False,
        engines=("tensorrt", "torch"),
        preprocess_impl="triton",
        postprocess_impl="triton",
        # On the host: nvJPEG through torchvision was never tried on an Orin.
        jpeg_decoder="opencv",
        preprocess=StagePlan(1, 8, 0),
        engine=StagePlan(1, 8, 1000),
        postprocess=StagePlan(1, 8, 0),
    ),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {list(TARGETS)}")
    return TARGETS[name]
