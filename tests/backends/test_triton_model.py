"""The python-backend adapter: DLPack strides, one batched call per execute with errors kept
per request (against a fake triton_python_backend_utils: the real one lives in the stub)."""

from __future__ import annotations

import gc
import json
import sys

import numpy as np
import pytest
import torch

from backends.errors import InvalidRequestError
from backends.triton_model import (
    finish_device_work,
    freeze_startup_objects,
    request_flag,
    serve_batch,
    serve_rows,
    split_rows,
    stage_devices,
    with_row_major_strides,
)


def row_major(shape):
    return list(torch.empty(shape).stride())


def test_row_major_tensors_pass_through_untouched():
    tensor = torch.arange(24).reshape(2, 3, 4)
    assert with_row_major_strides(tensor) is tensor


def test_zero_strides_of_empty_numpy_arrays_are_fixed():
    # What np.concatenate of empty polygons gives (numpy 1.26), and the python backend refuses.
    empty = np.lib.stride_tricks.as_strided(np.zeros((0, 2), np.int32), strides=(0, 0))
    fixed = with_row_major_strides(torch.from_numpy(empty))
    assert list(fixed.stride()) == row_major((0, 2)) and fixed.dtype == torch.int32


def test_a_new_leading_axis_is_re_viewed_not_copied():
    # Every postprocess output is `array[None]`: numpy gives the new axis a stride of 0.
    array = np.arange(6, dtype=np.int32).reshape(3, 2)
    source = torch.from_numpy(array[None])
    fixed = with_row_major_strides(source)
    assert list(fixed.stride()) == row_major((1, 3, 2))
    assert fixed.data_ptr() == source.data_ptr()  # the same memory: no copy
    assert torch.equal(fixed, source)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU stage's outputs need a CUDA device")
def test_gpu_outputs_with_a_size_one_axis_are_re_viewed_on_the_device():
    source = torch.arange(6.0, device="cuda").as_strided((1, 3, 2), (0, 2, 1))  # as numpy's x[None]
    fixed = with_row_major_strides(source)
    assert list(fixed.stride()) == row_major((1, 3, 2)) and fixed.device == source.device
    assert fixed.data_ptr() == source.data_ptr() and torch.equal(fixed, source)


def test_transposed_and_sliced_tensors_become_row_major_copies():
    base = torch.arange(12.0).reshape(3, 4)
    for view in (base.t(), base[:, ::2]):
        fixed = with_row_major_strides(view)
        assert list(fixed.stride()) == row_major(view.shape)
        assert torch.equal(fixed, view)


class FakePbUtils:
    """A stand-in for triton_python_backend_utils (only the stub has it): responses record
    their tensors or error, tensors their name and value."""

    class TritonError:
        INVALID_ARG, INTERNAL, CANCELLED = "INVALID_ARG", "INTERNAL", "CANCELLED"

        def __init__(self, message, code):
            self.message, self.code = message, code

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.output_tensors, self.error = output_tensors, error

    class Tensor:
        @staticmethod
        def from_dlpack(name, tensor):
            return name, torch.from_dlpack(tensor)

    class Logger:
        @staticmethod
        def log_info(message):
            pass

    @staticmethod
    def get_input_tensor_by_name(request, name):
        """The request's `value` as its one input (a tensor), whatever the name."""
        value = request.value

        class Input:
            def to_dlpack(self):
                return torch.utils.dlpack.to_dlpack(value)

        return Input()


class FakeRequest:
    def __init__(self, value, cancelled=False):
        self.value, self.cancelled = value, cancelled

    def is_cancelled(self):
        return self.cancelled


@pytest.fixture
def fake_pb_utils(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FakePbUtils)


def double_all(values):
    """The batched call: one output per item; a negative value breaks the whole batch."""
    if any(v < 0 for v in values):
        raise RuntimeError(f"cannot double {min(values)}")
    return [{"out": torch.tensor([2 * v])} for v in values]


def read_value(request):
    if request.value is None:
        raise InvalidRequestError("request lacks input 'x'")
    return request.value


def test_one_batched_call_serves_every_request(fake_pb_utils):
    calls = []

    def run(values):
        calls.append(list(values))
        return double_all(values)

    responses = serve_batch([FakeRequest(1), FakeRequest(2), FakeRequest(3)], read_value, run)
    assert calls == [[1, 2, 3]]
    assert [r.output_tensors[0][1].item() for r in responses] == [2, 4, 6]


def test_an_unreadable_request_fails_alone_naming_the_problem(fake_pb_utils):
    responses = serve_batch([FakeRequest(1), FakeRequest(None), FakeRequest(3)], read_value, double_all)
    assert responses[1].error.code == "INVALID_ARG" and "lacks input 'x'" in responses[1].error.message
    assert [responses[i].output_tensors[0][1].item() for i in (0, 2)] == [2, 6]


def test_a_failing_batch_is_rerun_item_by_item(fake_pb_utils):
    responses = serve_batch([FakeRequest(1), FakeRequest(-4), FakeRequest(3)], read_value, double_all)
    assert responses[1].error.code == "INTERNAL" and "cannot double -4" in responses[1].error.message
    assert [responses[i].output_tensors[0][1].item() for i in (0, 2)] == [2, 6]


def test_cancelled_requests_are_answered_cancelled(fake_pb_utils):
    responses = serve_batch([FakeRequest(1, cancelled=True), FakeRequest(2)], read_value, double_all)
    assert responses[0].error.code == "CANCELLED"
    assert responses[1].output_tensors[0][1].item() == 4


def test_cpu_outputs_and_failed_items_need_no_device_wait():
    assert finish_device_work([{"a": torch.zeros(2), "b": np.zeros(2)}, RuntimeError("failed item")]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU outputs need a CUDA device")
def test_gpu_outputs_are_handed_over_as_capsules_after_one_wait_a_batch(fake_pb_utils, monkeypatch):
    handed, waits = [], []
    synchronize = torch.cuda.Stream.synchronize

    def from_dlpack(name, value):
        handed.append(type(value).__name__)
        return name, torch.from_dlpack(value)

    def counted_synchronize(stream):
        waits.append(stream)
        return synchronize(stream)

    monkeypatch.setattr(FakePbUtils.Tensor, "from_dlpack", staticmethod(from_dlpack))
    monkeypatch.setattr(torch.cuda.Stream, "synchronize", counted_synchronize)

    def run(values):
        busy = torch.ones(2048, 2048, device="cuda")
        for _ in range(20):  # queued work the hand-over must wait for
            busy = busy @ busy / 2048
        return [{"out": torch.tensor([2.0 * v], device="cuda") * busy[0, :1], "rows": busy[:2]} for v in values]

    responses = serve_batch([FakeRequest(1), FakeRequest(2), FakeRequest(3)], read_value, run)
    assert handed == ["PyCapsule"] * 6
    assert len(waits) == 1
    assert [r.output_tensors[0][1].item() for r in responses] == [2.0, 4.0, 6.0]


def doubled_rows(batch):
    return {"out": batch * 2, "rows": torch.full((len(batch),), len(batch))}


def test_serve_rows_runs_every_requests_rows_as_one_batch(fake_pb_utils):
    requests = [FakeRequest(torch.ones(2, 3)), FakeRequest(torch.full((1, 3), 5.0))]
    responses = serve_rows(requests, "input", doubled_rows, torch.device("cpu"))
    first, second = (dict(r.output_tensors) for r in responses)
    assert first["out"].tolist() == [[2.0] * 3] * 2 and second["out"].tolist() == [[10.0] * 3]
    assert first["rows"].tolist() == [3, 3] and second["rows"].tolist() == [3]  # one batch of 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="moving host rows to the GPU needs a CUDA device")
def test_serve_rows_uploads_host_rows_before_concatenating_them(fake_pb_utils, monkeypatch):
    concatenated_on = []
    cat = torch.cat

    def recorded_cat(tensors, *args, **kwargs):
        concatenated_on.extend(t.device.type for t in tensors)
        return cat(tensors, *args, **kwargs)

    monkeypatch.setattr(torch, "cat", recorded_cat)
    requests = [FakeRequest(torch.ones(2, 3)), FakeRequest(torch.full((1, 3), 5.0))]
    responses = serve_rows(requests, "input", doubled_rows, torch.device("cuda"))
    assert concatenated_on == ["cuda", "cuda"]
    assert dict(responses[1].output_tensors)["out"].tolist() == [[10.0] * 3]


def test_split_rows_gives_each_request_its_rows():
    parts = split_rows({"a": torch.arange(6).reshape(3, 2), "b": torch.arange(3)}, [2, 1])
    assert parts[0]["a"].tolist() == [[0, 1], [2, 3]] and parts[1]["b"].tolist() == [2]


class FakeParameterRequest(FakeRequest):
    """A fake request whose parameters() is the JSON text the python backend hands over."""

    def __init__(self, parameters: str):
        super().__init__(value=1)
        self.text = parameters

    def parameters(self):
        return self.text


@pytest.mark.parametrize(
    "parameters, default, expected",
    [("{}", True, True), ("{}", False, False), ('{"polygons":false}', True, False),
     ('{"polygons":true,"other":3}', False, True), ("", True, True)],
)
def test_a_bool_request_parameter_or_the_default(parameters, default, expected):
    assert request_flag(FakeParameterRequest(parameters), "polygons", default) is expected


@pytest.mark.parametrize("value", ['"false"', "0", "1", "null", "[true]"])
def test_a_parameter_that_is_no_bool_fails_its_request_alone(fake_pb_utils, value):
    def read(request):
        return request_flag(request, "polygons", True)

    def run(flags):
        return [{"out": torch.tensor([flag])} for flag in flags]

    requests = [FakeParameterRequest("{}"), FakeParameterRequest(f'{{"polygons":{value}}}')]
    responses = serve_batch(requests, read, run)
    assert responses[0].output_tensors[0][1].item() is True
    error = responses[1].error
    assert error.code == "INVALID_ARG"
    assert error.message == f"request parameter 'polygons' must be a bool (true or false), got {json.loads(value)!r}"


def test_a_gpu_stage_makes_its_instance_gpu_the_current_device(monkeypatch):
    """Kernels launch on the current device: an instance on GPU 1 must not launch on GPU 0."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a fake: no GPU needed
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    parameters = {"device": "cuda", "FORCE_CPU_ONLY_INPUT_TENSORS": "no"}
    config = {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}
    args = {"model_name": "stage", "model_config": json.dumps(config)}
    args["model_instance_device_id"] = "1"
    devices = stage_devices(args)
    assert chosen == [torch.device("cuda", 1)]
    assert devices.compute == devices.outputs == torch.device("cuda", 1)


def test_objects_alive_at_startup_leave_full_collections_and_later_ones_do_not(fake_pb_utils):
    startup = [[] for _ in range(1000)]  # lists: tracked by the garbage collector
    try:
        frozen = freeze_startup_objects("rfdetr_seg_postprocess")
        assert frozen == gc.get_freeze_count() >= len(startup)
        later = []
        scanned = {id(o) for o in gc.get_objects()}  # what a full collection walks
        assert not any(id(o) in scanned for o in startup)
        assert id(later) in scanned
    finally:
        gc.unfreeze()  # this test process's objects, back to the collector
