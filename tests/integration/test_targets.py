"""The same frames served by other targets and engines give the cpu target's results.

- CPU (runs in CI): the eager torch engine (rfdetr's own model, the export's weights) served
  beside the ONNX Runtime engine.
- GPU (skipped without CUDA): the `gpu` target, every stage on the GPU (under CUDA MPS where the
  host has it), and the `jetson` layout, over plain gRPC and system shared memory, against the cpu
  target within what FP16 alone changes; between the gpu target's stages tensors arrive as GPU
  tensors.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from backends import contract as c
from backends.classes import ClassTable
from backends.jpeg_decode import JPEG_DECODERS
from backends.postprocess_settings import PostprocessSettings
from backends.preprocess import preprocess_batch
from clients.results import result_from_response
from tests.fp16_parity import (
    FP16_BOX_TOL_PX,
    FP16_SCORE_NOISE,
    assert_no_error_beyond_fp16,
    eager_fp16_against_fp32,
)
from tests.integration.test_jpeg_ensemble import assert_jpeg_serves_its_decoded_frame
from tests.integration.test_server import SystemShmRegion, image_input
from tests.repositories import build_test_repository
from tools.compare_results import SCORE_NOISE, Comparison, compare
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD
from tools.targets import TARGETS
from tools.tritonserver import TritonServer

pytestmark = pytest.mark.integration
SIZES = [(360, 640), (97, 131), (1080, 1920), (1, 1)]


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for height, width in SIZES:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame[height // 3 : height // 2, width // 5 : width // 2] = (200, 40, 90)
        out.append(frame)
    return out


def serve_all(url: str, shm: bool = False) -> list:
    with grpcclient.InferenceServerClient(url) as client:
        results = []
        for frame in frames():
            if shm:
                with SystemShmRegion(client, frame.nbytes) as region:
                    results.append(result_from_response(client.infer(c.ENSEMBLE, [region.input_for(frame)])))
            else:
                results.append(result_from_response(client.infer(c.ENSEMBLE, [image_input(frame)])))
        return results


def compare_all(expected: list, served: list, box_tol_px: float, score_noise: float = SCORE_NOISE) -> Comparison:
    total = Comparison()
    for a, b in zip(expected, served, strict=True):
        total.add(compare(a, b, RANDOM_WEIGHTS_THRESHOLD, box_tol_px, score_noise))
    return total


@pytest.fixture(scope="module")
def cpu_results(triton_server):
    return serve_all(triton_server.grpc_url)


def test_torch_engine_serves_what_the_onnx_engine_serves(nano_export, tmp_path, cpu_results):
    repository = build_test_repository(nano_export, tmp_path / "models", engine="torch")
    with TritonServer(repository, tmp_path / "tritonserver.log") as server:
        served = serve_all(server.grpc_url)
    report = compare_all(cpu_results, served, box_tol_px=0.05)
    print(report)
    assert report.matched > 0 and not report.unexplained, report
    assert report.min_mask_iou >= 0.99, report
    # Every python stage froze its startup objects out of full collections (triton_model).
    text = server.log_path.read_text(errors="replace")
    for model in (c.PREPROCESS, c.ENGINE, c.POSTPROCESS):
        assert re.search(rf"{model}: \d+ objects alive after initialize left out of full collections", text), model
        # ...and fixed its malloc thresholds in the real stub (backends.host_heap).
        assert f"{model}: freed host buffers up to 32 MiB stay in the heap for reuse" in text, model


def test_a_deployment_without_polygons_serves_the_same_masks_without_outlines(nano_export, tmp_path, cpu_results):
    repository = build_test_repository(nano_export, tmp_path / "models", polygons=False)
    with TritonServer(repository, tmp_path / "tritonserver.log") as server:
        served = serve_all(server.grpc_url)
    assert sum(len(r) for r in served) > 0
    for with_polygons, without in zip(cpu_results, served, strict=True):
        assert without.rle_counts == with_polygons.rle_counts
        assert without.class_ids.tolist() == with_polygons.class_ids.tolist()
        assert all(len(p) == 0 for p in without.polygons)


@pytest.fixture(scope="module")
def fp16_alone(nano_export) -> Comparison:
    """Eager FP16 against eager fp32 on these frames: the yardstick of the FP16 engine."""
    batch = preprocess_batch([torch.from_numpy(f) for f in frames()], 312, torch.device("cuda"))
    settings = PostprocessSettings(100, RANDOM_WEIGHTS_THRESHOLD, ClassTable.load(nano_export.classes))
    return eager_fp16_against_fp32(nano_export.weights, batch, SIZES, settings)


# Jetson's layout (python stages KIND_CPU with CPU tensors at the boundary, GPU work inside) runs
# on any CUDA host: checked here with the torch engine, since no TensorRT is installable. On a GPU
# the torch engine is the compiled FP16 one (backends.engine_compiled), so both are held to what
# FP16 alone does against fp32 (tests/fp16_parity.py); the stages' kernels have their own
# parity tests.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the gpu and jetson targets need a CUDA device")
@pytest.mark.parametrize("target, boundary", [("gpu", "cuda"), ("jetson", "cpu")])
def test_gpu_targets_serve_what_the_cpu_target_serves(nano_export, tmp_path, cpu_results, fp16_alone, target, boundary):
    repository = build_test_repository(nano_export, tmp_path / "models", target=target, engine="torch", jpeg=True)
    log = tmp_path / "tritonserver.log"
    decode = JPEG_DECODERS[TARGETS[target].jpeg_decoder]
    with TritonServer.for_target(repository, log, TARGETS[target]) as server:
        over_grpc = serve_all(server.grpc_url)
        over_shm = serve_all(server.grpc_url, shm=True)
        # The JPEG ensemble serves what the raw one serves for the pixels the target's decoder
        # (nvJPEG on gpu) makes of the file; nvJPEG against OpenCV: tests/backends/test_jpeg_decode.py.
        jpeg_detections = assert_jpeg_serves_its_decoded_frame(
            server.grpc_url,
            lambda data: np.ascontiguousarray(decode([torch.from_numpy(data)], torch.device("cuda"))[0].cpu().numpy()),
        )
    assert jpeg_detections > 0
    for served in (over_grpc, over_shm):
        print(target, end=" vs the cpu target: ")
        report = compare_all(cpu_results, served, FP16_BOX_TOL_PX, FP16_SCORE_NOISE)
        print(report)
        assert_no_error_beyond_fp16(report, fp16_alone, min_matched=10)
    text = log.read_text(errors="replace")
    # The gpu target keeps tensors on the GPU between stages; jetson's cross on the CPU.
    for name in (c.ENGINE_INPUT, c.DETS, c.LABELS, c.MASKS):
        assert re.search(rf"input '{name}' arrives on {boundary}", text), f"{name} did not arrive on {boundary}"
    assert "computes on cuda" in text
