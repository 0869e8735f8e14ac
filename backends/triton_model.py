"""What every python-backend model.py shares: settings from the config, the devices a stage
runs on, tensors in and out through DLPack on whatever device, and one batched call per execute
with errors kept per request.

Importable only inside the python backend stub where it touches triton_python_backend_utils,
so that import sits inside the functions; everything else in backends/ imports anywhere.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.utils.dlpack import to_dlpack

from backends.errors import InvalidRequestError
from backends.host_upload import upload
from backends.server_log import log_info
from backends.stage_profile import PROFILE_ENV, StackSampler, profile_stage_if_asked

Item = TypeVar("Item")
Outputs = Mapping[str, Any]  # output name -> torch tensor or numpy array, batch axis included


def freeze_startup_objects(model_name: str) -> int:
    """Keeps every object alive at the end of initialize out of the garbage collector's full
    collections; returns how many. A stage process holds ~420 k such objects (torch, rfdetr,
    Triton-lang, the model), alive as long as the model: a full collection over them took ~150 ms
    on the CPU host (benchmarks/results/cpu/gc-freeze.md), a stall for every request in flight
    whenever allocation counts set one off. gc.freeze (docs.python.org/3/library/gc.html)
    moves them to a permanent generation; what is garbage now is collected first."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log_info(f"{model_name}: {frozen} objects alive after initialize left out of full collections")
    return frozen


def profile_if_asked(model_name: str) -> StackSampler | None:
    """Samples this stage's main thread (backends.stage_profile) when the server's environment
    sets RFDETR_STAGE_PROFILE; logs where the report goes."""
    sampler = profile_stage_if_asked(model_name)
    if sampler is not None:
        log_info(f"{model_name}: sampling its main thread's stacks into {sampler.path} ({PROFILE_ENV})")
    return sampler


def model_parameter(args: dict, key: str) -> str:
    """A string parameter of the model's config.pbtxt; raises naming the missing key."""
    parameters = json.loads(args["model_config"]).get("parameters", {})
    if key not in parameters:
        raise ValueError(f"config.pbtxt of {args['model_name']} lacks parameter {key!r}")
    return parameters[key]["string_value"]


@dataclass(frozen=True)
class StageDevices:
    """Where a stage computes, and where its output tensors leave it.

    They differ on Jetson: the python backend there takes no GPU tensors, so a stage computing
    on the GPU still hands CPU tensors to Triton."""

    compute: torch.device
    outputs: torch.device


def stage_devices(args: dict) -> StageDevices:
    """From the config's `device` parameter ("cpu" or "cuda"), the instance's GPU id and
    FORCE_CPU_ONLY_INPUT_TENSORS (GPU tensors cross the boundary only when it is "no")."""
    device = model_parameter(args, "device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"config.pbtxt of {args['model_name']}: device must be cpu or cuda, got {device!r}")
    if device == "cpu":
        return StageDevices(torch.device("cpu"), torch.device("cpu"))
    if not torch.cuda.is_available():
        raise RuntimeError(f"{args['model_name']} is configured for device cuda but torch sees no CUDA device")
    gpu = torch.device("cuda", int(args.get("model_instance_device_id") or 0))
    # Triton-lang launches, CUDA graph replays and torch's current stream follow the current
    # device, which is GPU 0 in every stub unless set: a stub serves one instance, on this GPU.
    torch.cuda.set_device(gpu)
    gpu_tensors = model_parameter(args, "FORCE_CPU_ONLY_INPUT_TENSORS") == "no"
    return StageDevices(gpu, gpu if gpu_tensors else torch.device("cpu"))


def stage_impl(args: dict, impls: Mapping[str, Callable], devices: StageDevices) -> tuple[str, Callable]:
    """(name, implementation) the config's `impl` parameter names, logged once at load."""
    impl = model_parameter(args, "impl")
    if impl not in impls:
        raise ValueError(f"config.pbtxt of {args['model_name']}: unknown impl {impl!r}; choose one of {list(impls)}")
    log_info(f"{args['model_name']}: impl {impl}, computes on {devices.compute}, outputs on {devices.outputs}")
    return impl, impls[impl]


def max_batch_size(args: dict) -> int:
    return int(json.loads(args["model_config"])["max_batch_size"])


def input_dims(args: dict, name: str) -> list[int]:
    """An input's dims as the config declares them (without the batch axis)."""
    for tensor in json.loads(args["model_config"])["input"]:
        if tensor["name"] == name:
            return [int(d) for d in tensor["dims"]]
    raise ValueError(f"config.pbtxt of {args['model_name']} has no input {name!r}")


_reported_inputs: set[str] = set()


def input_tensor(request, name: str) -> torch.Tensor:
    """A request's input as a torch tensor on the device Triton put it, through DLPack.

    The first time each input arrives, the log says on which device (input names are unique
    across the stages): that is how a deployment, and the GPU tests, see tensors stay on the GPU."""
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidRequestError(f"request lacks input {name!r}")
    value = torch.from_dlpack(tensor.to_dlpack())
    if name not in _reported_inputs:
        _reported_inputs.add(name)
        log_info(f"input {name!r} arrives on {value.device}")
    return value


def request_flag(request, key: str, default: bool) -> bool:
    """A bool request parameter (tritonclient's `infer(..., parameters={key: False})`), or
    `default` when the request has none. Requests to the ensemble carry theirs to every stage.

    Raises:
        InvalidRequestError: the value is no bool (a string "false", a number), naming the key.
    """
    parameters = json.loads(request.parameters() or "{}")
    if key not in parameters:
        return default
    value = parameters[key]
    if not isinstance(value, bool):
        raise InvalidRequestError(f"request parameter {key!r} must be a bool (true or false), got {value!r}")
    return value


def output_tensor(name: str, value):
    """An output tensor from a torch tensor (either device) or a numpy array, through DLPack.

    A GPU tensor must be finished: it is handed over as a DLPack capsule, which the python
    backend takes as it is. Given the tensor itself, the stub asks it for a capsule on the
    stub's own stream (torch records an event and makes that stream wait on it) and then
    synchronizes that stream: for every output, ~30 a batch in the engine stage, 18 % of its
    time at concurrency 32 (benchmarks/results/h200/perf-analyzer/concurrency-32.md).
    serve_batch waits for a batch's device work once instead (finish_device_work): the ensemble
    at concurrency 32 over CUDA shm went from 1297 to 1598 requests/s (engine-handoff.md there).

    Not pb_utils.Tensor(name, ndarray): the python backend of tritonserver 2.51 sends tensors
    built from numpy >= 2 arrays with no data (seen on the GPU host, numpy 2.5)."""
    import triton_python_backend_utils as pb_utils

    tensor = with_row_major_strides(value if isinstance(value, torch.Tensor) else torch.from_numpy(value))
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(tensor) if tensor.is_cuda else tensor)


def finish_device_work(results: list) -> int:
    """Waits until the GPU tensors among results (Outputs, or exceptions that are skipped) are
    computed, one wait per device on its current stream, where the stages compute; returns how
    many devices it waited on."""
    devices = {
        value.device
        for outputs in results
        if not isinstance(outputs, Exception)
        for value in outputs.values()
        if isinstance(value, torch.Tensor) and value.is_cuda
    }
    for device in devices:
        torch.cuda.current_stream(device).synchronize()
    return len(devices)


def with_row_major_strides(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor with exactly row-major strides: itself, a view of it, or a row-major copy.

    The python backend accepts only such DLPack tensors, and "contiguous" in torch's sense is not
    enough: numpy gives empty arrays zero strides (np.concatenate of empty polygons), and a new
    leading axis (`array[None]`, every postprocess output) a stride of 0. Those address their
    elements in row-major order already, so they are re-viewed, not copied: the copy was 57 % of
    the postprocess stage's busy time on the H200 at concurrency 32, run on torch's host thread
    pool, whose spinning workers then took most of the host
    (benchmarks/results/h200/perf-analyzer/concurrency-32.md)."""
    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.append(step)
        step *= size
    expected.reverse()
    if list(tensor.stride()) == expected:
        return tensor
    if tensor.is_contiguous():  # strides differ only on axes of size 1, or the tensor is empty
        return tensor.as_strided(tensor.shape, expected, tensor.storage_offset())
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device).copy_(tensor)


def serve_batch(
    requests: list,
    read: Callable[[Any], Item],
    run: Callable[[list[Item]], list[Outputs]],
) -> list:
    """One response per request, from one batched call over every readable request.

    Args:
        requests: what execute() was given (the dynamic batcher's gathering).
        read: request -> its item; raising fails that request alone.
        run: items -> one Outputs per item, in order.

    A request that cannot be read gets its own error (INVALID_ARG for InvalidRequestError,
    naming the problem) and the others are served. If the batched call itself fails, each item
    is run alone, so a failure stays with the request that caused it.
    """
    import triton_python_backend_utils as pb_utils

    def error_response(error: Exception):
        if isinstance(error, InvalidRequestError):
            code, message = pb_utils.TritonError.INVALID_ARG, str(error)
        else:
            code, message = pb_utils.TritonError.INTERNAL, f"{type(error).__name__}: {error}"
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))

    def served(outputs: Outputs):
        tensors = [output_tensor(name, value) for name, value in outputs.items()]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    responses: list = [None] * len(requests)
    positions, items = [], []
    for position, request in enumerate(requests):
        if request.is_cancelled():
            responses[position] = pb_utils.InferenceResponse(
                error=pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
            )
            continue
        try:
            items.append(read(request))
            positions.append(position)
        except Exception as error:  # noqa: BLE001 - reported to its client, the server keeps serving
            responses[position] = error_response(error)
    if not items:
        return responses
    try:
        results: list[Outputs | Exception] = list(run(items))
        if len(results) != len(items):
            raise RuntimeError(f"batched call returned {len(results)} results for {len(items)} requests")
    except Exception as error:  # noqa: BLE001 - isolated below
        results = [error] if len(items) == 1 else [_run_alone(run, item) for item in items]
    finish_device_work(results)
    for position, result in zip(positions, results):
        try:
            responses[position] = error_response(result) if isinstance(result, Exception) else served(result)
        except Exception as error:  # noqa: BLE001 - an output Triton refuses fails its request alone
            responses[position] = error_response(error)
    return responses


def _run_alone(run: Callable[[list[Item]], list[Outputs]], item: Item) -> Outputs | Exception:
    try:
        return run([item])[0]
    except Exception as error:  # noqa: BLE001 - becomes this request's error response
        return error


def serve_rows(
    requests: list,
    name: str,
    run: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    device: torch.device,
) -> list:
    """serve_batch for a model whose requests carry rows of one input (the engines): every
    request's rows moved to `device` (where `run` computes) and concatenated there into one
    batch, run once, and the outputs split back.

    Moved first, because concatenating rows in host memory (a client's system shm, plain gRPC)
    runs on torch's host thread pool, one pool of a thread per core in each stub process: on the
    16-core H200 host two processes doing so at once took 64 ms for a batch of 8 rows against
    1.07 ms for one alone; each request's rows uploaded, then concatenated on the GPU, 1.27-1.39
    and 0.97 ms (benchmarks/results/h200/engine-host-rows.md)."""

    def run_batch(inputs: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return split_rows(run(torch.cat([upload(rows, device) for rows in inputs])), [len(x) for x in inputs])

    return serve_batch(requests, lambda request: input_tensor(request, name), run_batch)


def split_rows(outputs: Mapping[str, torch.Tensor], counts: list[int]) -> list[dict[str, torch.Tensor]]:
    """Batched outputs (rows along axis 0) -> one {name: rows} per request, `counts` rows each."""
    split = {name: tensor.split(counts) for name, tensor in outputs.items()}
    return [{name: parts[i] for name, parts in split.items()} for i in range(len(counts))]
