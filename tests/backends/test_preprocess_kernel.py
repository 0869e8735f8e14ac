"""The fused preprocess kernel against its references, both modes, max abs error asserted.

- bilinear: backends.preprocess.preprocess_frame (torch on the CPU), <= 1e-6. Measured: 0 (the
  same float operations in the same order) whenever torch takes its multi-threaded CPU path
  (R + R > 128), in the interpreter and on an H200 at full size; 5.96e-7 at R = 16, where
  torch sums the corners in another order.
- pil: Pillow itself (backends.preprocess_pil), <= 1e-6. Measured: 0 everywhere (byte-exact
  resize, then the same float operations).

Without a CUDA device the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here
before triton is imported) on small CPU frames; with one, the same tests run on the GPU and the
full-size ones (1080p, 4K, 720p, 312x176 and a batch of 8 mixed sizes, R = 312) run too.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

import backends.preprocess_kernel as kernel_module  # noqa: E402
from backends.frames import InvalidImageError  # noqa: E402
from backends.preprocess import preprocess_frame  # noqa: E402
from backends.preprocess_kernel import preprocess_frames  # noqa: E402

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda", torch.cuda.current_device()) if ON_GPU else torch.device("cpu")
TOLERANCE = 1e-6  # max abs, fp32, both modes
FP16_ULP = 2.0**-9  # fp16 spacing in [2, 4): outputs lie in [-2.2, 2.7]

if not ON_GPU and not kernel_module._INTERPRETED:
    pytest.skip(
        "no CUDA device, and backends.preprocess_kernel was imported before TRITON_INTERPRET=1",
        allow_module_level=True,
    )
# Before triton 3.9 the interpreter's fma rounds twice, unlike the GPU's (and torch's CPU build).
INTERPRETER_FMA_EXACT = ON_GPU or tuple(int(p) for p in triton.__version__.split(".")[:2]) >= (3, 9)


def _pil_reference():
    module = pytest.importorskip("backends.preprocess_pil", reason="the pil reference needs Pillow")
    return module.preprocess_frame_pil


def reference(image: torch.Tensor, resolution: int, mode: str) -> torch.Tensor:
    """The mode's reference on the CPU: float32 (1, 3, R, R)."""
    if mode == "bilinear":
        return preprocess_frame(image.cpu(), resolution)
    return _pil_reference()(image.cpu(), resolution)


def random_frame(height: int, width: int, seed: int | None = None) -> torch.Tensor:
    rng = np.random.default_rng(height * 7919 + width if seed is None else seed)
    return torch.from_numpy(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def max_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.cpu().float() - theirs.cpu().float()).abs().max().item()


def check_mode(mode: str) -> None:
    if mode == "bilinear" and not INTERPRETER_FMA_EXACT:
        pytest.skip(f"triton {triton.__version__}'s interpreter rounds fma twice (bilinear needs >= 3.9)")
    if mode == "pil":
        _pil_reference()


# (height, width, R): up- and down-scaling, odd sizes, 1x1, portrait (Pillow 13 resizes it
# vertically first), one axis unchanged, R + R <= 128 (torch's other CPU path).
SMALL_CASES = [
    (9, 7, 80),
    (150, 110, 80),
    (37, 53, 81),
    (1, 1, 72),
    (140, 40, 66),
    (80, 120, 80),
    (45, 30, 96),
    (20, 30, 16),
]


@pytest.mark.parametrize("mode", ["bilinear", "pil"])
@pytest.mark.parametrize("height, width, resolution", SMALL_CASES)
def test_matches_the_reference(mode, height, width, resolution):
    check_mode(mode)
    image = random_frame(height, width)
    ours = preprocess_frames([image.to(DEVICE)], resolution, mode=mode)
    assert ours.shape == (1, 3, resolution, resolution) and ours.dtype == torch.float32
    assert ours.device == DEVICE
    error = max_error(ours, reference(image, resolution, mode))
    assert error <= TOLERANCE, f"{mode} {height}x{width} -> {resolution}: max abs error {error:.3g}"


@pytest.mark.parametrize("mode", ["bilinear", "pil"])
def test_a_batch_of_mixed_sizes_is_one_launch(mode, monkeypatch):
    check_mode(mode)
    sizes = [(60, 90), (1, 1), (97, 31), (80, 80), (33, 140)]
    frames = [random_frame(h, w) for h, w in sizes]
    launches = []
    name = "_bilinear_kernel" if mode == "bilinear" else "_pil_kernel"
    real = getattr(kernel_module, name)

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return real[grid]

    monkeypatch.setattr(kernel_module, name, Counting())
    batch = preprocess_frames([f.to(DEVICE) for f in frames], 72, mode=mode)
    assert len(launches) == 1 and launches[0][0] == len(frames), launches
    for row, frame in zip(batch, frames):
        error = max_error(row[None], reference(frame, 72, mode))
        assert error <= TOLERANCE, f"{mode} {tuple(frame.shape)}: max abs error {error:.3g}"


@pytest.mark.parametrize("mode", ["bilinear", "pil"])
def test_fp16_output_is_the_fp32_output_rounded(mode):
    check_mode(mode)
    image = random_frame(70, 110).to(DEVICE)
    full = preprocess_frames([image], 80, mode=mode)
    half = preprocess_frames([image], 80, mode=mode, out_dtype=torch.float16)
    assert half.dtype == torch.float16
    assert torch.equal(half, full.half())
    error = max_error(half, reference(image, 80, mode))
    assert error <= FP16_ULP / 2 + TOLERANCE, f"fp16 {mode}: max abs error {error:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_writes_into_the_given_out(dtype):
    frames = [random_frame(50, 70).to(DEVICE), random_frame(90, 40).to(DEVICE)]
    out = torch.full((2, 3, 72, 72), float("nan"), dtype=dtype, device=DEVICE)
    result = preprocess_frames(frames, 72, out=out)
    assert result is out
    assert torch.equal(out, preprocess_frames(frames, 72, out_dtype=dtype))


@pytest.mark.parametrize("mode", ["bilinear", "pil"])
def test_reads_strided_frames_where_they_are(mode):
    check_mode(mode)
    big = random_frame(100, 120).to(DEVICE)
    crop = big[10:70, 15:101]  # rows longer than the frame
    chw = np.random.default_rng(3).integers(0, 256, (3, 45, 55), dtype=np.uint8)
    planar = torch.from_numpy(chw).to(DEVICE).permute(1, 2, 0)  # a CHW buffer seen as HWC
    assert not crop.is_contiguous() and not planar.is_contiguous()
    batch = preprocess_frames([crop, planar], 80, mode=mode)
    for row, frame in zip(batch, (crop, planar)):
        error = max_error(row[None], reference(frame.contiguous(), 80, mode))
        assert error <= TOLERANCE, f"{mode} strided {tuple(frame.shape)}: max abs error {error:.3g}"


def test_bgr_becomes_rgb():
    blue = torch.zeros((20, 30, 3), dtype=torch.uint8)
    blue[..., 0] = 255  # BGR: channel 0 is blue
    out = preprocess_frames([blue.to(DEVICE)], 70).cpu()[0]
    means, stds = torch.tensor(kernel_module.MEANS), torch.tensor(kernel_module.STDS)
    assert torch.equal(out[2], torch.full_like(out[2], ((1 - means[2]) / stds[2]).item()))
    assert torch.equal(out[0], torch.full_like(out[0], ((0 - means[0]) / stds[0]).item()))


def test_the_pil_reference_is_torchvision_resize_of_a_pil_image():
    """What roboflow/inference runs: TF.resize(pil, antialias=True), to_tensor, normalize."""
    preprocess_frame_pil = _pil_reference()
    from backends.torchvision_cpu import ensure_torchvision_importable

    ensure_torchvision_importable()
    TF = pytest.importorskip("torchvision.transforms.functional")  # noqa: N806
    from PIL import Image

    image = random_frame(67, 101)
    pil = Image.fromarray(image.numpy()[:, :, ::-1].copy())
    resized = TF.resize(pil, [40, 40], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    theirs = TF.normalize(TF.to_tensor(resized), list(kernel_module.MEANS), list(kernel_module.STDS))
    assert torch.equal(preprocess_frame_pil(image, 40)[0], theirs)


def frame(shape, dtype=torch.uint8) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize(
    "frames, kwargs, error, message",
    [
        ([], {}, ValueError, "non-empty list"),
        ("frame", {}, ValueError, "non-empty list"),
        ([np.zeros((4, 4, 3), np.uint8)], {}, ValueError, "frame 0 must be a torch.Tensor, got ndarray"),
        ([frame((4, 4, 3)), frame((4, 4, 3), torch.float32)], {}, InvalidImageError, "must be uint8, got float32"),
        ([frame((4, 4))], {}, InvalidImageError, "HxWx3"),
        ([frame((4, 4, 4))], {}, InvalidImageError, "HxWx3"),
        ([frame((0, 4, 3))], {}, InvalidImageError, "empty: 0x4"),
        ([frame((4, 4, 3))], {"mode": "bicubic"}, ValueError, "mode must be one of"),
        ([frame((4, 4, 3))], {"resolution": 0}, ValueError, "resolution must be a positive int, got 0"),
        ([frame((4, 4, 3))], {"resolution": 8.0}, ValueError, "resolution must be a positive int, got 8.0"),
        ([frame((4, 4, 3))], {"out_dtype": torch.int32}, ValueError, "out_dtype must be torch.float32 or"),
        ([frame((4, 4, 3))], {"out": frame((1, 3, 9, 8), torch.float32)}, ValueError, r"shape \[1, 3, 8, 8\]"),
        ([frame((4, 4, 3))], {"out": frame((1, 3, 8, 8), torch.float64)}, ValueError, "float32 or float16"),
        (
            [frame((4, 4, 3))],
            {"out": frame((1, 3, 8, 8), torch.float16), "out_dtype": torch.float32},
            ValueError,
            "contradicts",
        ),
        (
            [frame((4, 4, 3))],
            {"out": frame((1, 8, 8, 3), torch.float32).permute(0, 3, 1, 2)},
            ValueError,
            "contiguous",
        ),
    ],
)
def test_rejects_bad_inputs_naming_the_problem(frames, kwargs, error, message):
    kwargs = {"resolution": 8, **kwargs}
    with pytest.raises(error, match=message):
        preprocess_frames(frames, **kwargs)


def test_rejects_frames_on_the_wrong_device():
    cpu = torch.zeros((4, 4, 3), dtype=torch.uint8)
    if ON_GPU:
        with pytest.raises(ValueError, match="frames must be CUDA tensors"):
            preprocess_frames([cpu], 8)
        with pytest.raises(ValueError, match="one device: frame 0 is on cuda:0, frame 1 on cpu"):
            preprocess_frames([cpu.cuda(), cpu], 8)
        with pytest.raises(ValueError, match="out must be on the frames' device"):
            preprocess_frames([cpu.cuda()], 8, out=torch.empty((1, 3, 8, 8)))
    else:
        with pytest.raises(ValueError, match="out must be on the frames' device"):
            preprocess_frames([cpu], 8, out=torch.empty((1, 3, 8, 8), device="meta"))


# Full size, on the GPU only (the interpreter would take minutes).
FULL_SIZES = [(1080, 1920), (2160, 3840), (720, 1280), (176, 312), (1920, 1080)]
gpu_only = pytest.mark.skipif(not ON_GPU, reason="full size: the CPU interpreter would take minutes")


@gpu_only
@pytest.mark.parametrize("mode", ["bilinear", "pil"])
@pytest.mark.parametrize("height, width", FULL_SIZES)
def test_full_size_frames_match_the_reference(mode, height, width):
    check_mode(mode)
    image = random_frame(height, width)
    ours = preprocess_frames([image.cuda()], 312, mode=mode)
    error = max_error(ours, reference(image, 312, mode))
    message = f"{mode} {width}x{height} -> 312: max abs error {error:.3g}"
    print(message)  # shown with -s
    assert error <= TOLERANCE, message


@gpu_only
@pytest.mark.parametrize("mode", ["bilinear", "pil"])
def test_full_size_batch_of_8_mixed_sizes(mode):
    check_mode(mode)
    sizes = [(1080, 1920), (720, 1280), (2160, 3840), (176, 312), (480, 640), (1920, 1080), (1, 1), (333, 517)]
    frames = [random_frame(h, w) for h, w in sizes]
    batch = preprocess_frames([f.cuda() for f in frames], 312, mode=mode, out_dtype=torch.float32)
    for row, image in zip(batch, frames):
        error = max_error(row[None], reference(image, 312, mode))
        message = f"{mode} {tuple(image.shape)} in a batch of 8: max abs error {error:.3g}"
        print(message)  # shown with -s
        assert error <= TOLERANCE, message
