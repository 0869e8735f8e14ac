"""What every python-backend model.py shares: one response per request, errors per request.

Importable only inside the python backend stub (triton_python_backend_utils lives there), so
the import is inside the function; everything else in backends/ imports anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class InvalidRequestError(ValueError):
    """The request itself is wrong (bad frame, bad tensor); the client gets INVALID_ARG."""


def model_parameter(args: dict, key: str) -> str:
    """A string parameter of the model's config.pbtxt; raises naming the missing key."""
    parameters = json.loads(args["model_config"]).get("parameters", {})
    if key not in parameters:
        raise ValueError(f"config.pbtxt of {args['model_name']} lacks parameter {key!r}")
    return parameters[key]["string_value"]


def respond_each(requests: list, handle: Callable[[Any], list]) -> list:
    """Calls handle(request) -> output tensors for each request; one bad request never fails
    the others, and its error names the problem."""
    import triton_python_backend_utils as pb_utils

    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=handle(request)))
        except InvalidRequestError as error:
            responses.append(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
            )
        except Exception as error:  # noqa: BLE001 - reported to the client, the server keeps serving
            message = f"{type(error).__name__}: {error}"
            responses.append(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))
            )
    return responses


def input_array(request, name: str):
    """A request's input as a numpy array, read through DLPack."""
    import torch
    import triton_python_backend_utils as pb_utils

    return torch.from_dlpack(pb_utils.get_input_tensor_by_name(request, name).to_dlpack()).numpy()


def output_tensor(name: str, array):
    """An output tensor from a numpy array or torch tensor, handed over through DLPack.

    Not pb_utils.Tensor(name, ndarray): the python backend of tritonserver 2.51 sends tensors
    built from numpy >= 2 arrays with no data (seen on the GPU host, numpy 2.5), and DLPack is
    also the way GPU tensors will leave these models.
    """
    import numpy as np
    import torch
    import triton_python_backend_utils as pb_utils

    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))
    return pb_utils.Tensor.from_dlpack(name, with_row_major_strides(tensor))


def with_row_major_strides(tensor):
    """The tensor itself when its strides are exactly row-major, else a row-major copy.

    The python backend accepts only such DLPack tensors, and "contiguous" in torch's sense is not
    enough: numpy gives empty arrays zero strides (np.concatenate of empty polygons)."""
    import torch

    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.append(step)
        step *= size
    if list(tensor.stride()) == expected[::-1]:
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device).copy_(tensor)
