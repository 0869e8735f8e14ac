"""Frames -> engine input on the GPU: one Triton-lang launch per batch of raw camera frames.

`preprocess_frames` fuses resize to R x R + BGR->RGB + /255 + (x - mean) / std and writes the
engine's NCHW input (fp32 or fp16) for a batch of frames of different sizes in ONE launch. Each
frame is read where it already is (one buffer per request): the kernel finds it through a small
per-frame table of int64 data pointers, sizes and strides (`_HEADER`), cast to a pointer
in-kernel; nothing copies or concatenates the pixels first. Grid: (frame, tile row, tile column).

Two resize modes, each with its reference:
- `bilinear` (default): `backends.preprocess.preprocess_frame`, i.e. torch's
  F.interpolate(bilinear, align_corners=False, antialias=False) on the float /255 image, what
  rfdetr's predict() and training use. The kernel computes in the order of torch's CPU kernel
  (aten/src/ATen/native/cpu/UpSampleKernel.cpp, the non-separable path torch takes for
  3-channel images with several threads and R + R > 128): the source index
  fma(in/out, o + 0.5, -0.5) clamped at 0, lambda = src - floor(src), each row mixed as
  fma(x0, l0, x1 * l1), the two rows as fma(top, l0, bottom * l1); true (IEEE) divisions for
  /255 and /std. Bit-identical to that path; torch's single-thread and small-output path
  (upsample_linear_channels_last) sums the four corners in another order: a few ULPs apart.
- `pil`: PIL's antialiased bilinear resize of the uint8 RGB image (torchvision's
  F.resize(pil_image, antialias=True)), then to_tensor and normalize; reference
  `backends.preprocess_pil.preprocess_frame_pil`. A byte-exact port of Pillow's Resample.c:
  int32 weights with PRECISION_BITS=22 computed on the host in double precision as
  precompute_coeffs + normalize_coeffs_8bpc do (cached per (source size, R) on the device), and
  two separable passes with the intermediate rounded and clamped to uint8 as Pillow's
  intermediate image is: horizontal first, or vertical first where Pillow >= 13 does (see
  _pillow_vertical_first). Per second-pass tap, each program gathers the first pass's taps of
  all its outputs at once (see _pil_tile).

Under TRITON_INTERPRET=1 (set before triton is imported) the same kernels run on CPU tensors.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import math
import os

import numpy as np
import torch
import triton
import triton.language as tl

from backends.contract import MEANS, STDS
from backends.frames import check_frame

MODES = ("bilinear", "pil")
OUT_DTYPES = (torch.float32, torch.float16)

# Per-frame table row, int64: where the frame is, its size and element strides; in pil mode
# also its rows' and columns' coefficient tables (device pointers, from _pil_axis_table), their
# tap counts and the pass order (_pillow_vertical_first); 0 in bilinear mode.
_HEADER = (
    "data_ptr", "height", "width", "stride_h", "stride_w", "stride_c",
    "rows_table", "rows_taps", "cols_table", "cols_taps", "vertical_first",
)  # fmt: skip
_ROW = tl.constexpr(len(_HEADER))
_PRECISION_BITS = tl.constexpr(22)  # Pillow's fixed-point weights: 1.0 == 1 << 22
_HALF = tl.constexpr(1 << 21)  # Pillow starts every sum at one half: rounds to nearest


def _pillow_major() -> int:
    try:
        return int(importlib.metadata.version("pillow").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 13


_PILLOW_VERTICAL_FIRST = _pillow_major() >= 13  # see _pillow_vertical_first

# The interpreter runs kernels on CPU tensors; it reads TRITON_INTERPRET when @triton.jit runs.
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

# (BLOCK_H, BLOCK_W, num_warps) per mode. The GPU's: the fastest in a sweep of device time
# on an H200 (benchmarks/results/h200/preprocess.md). The interpreter pays milliseconds per
# program instance, so it takes few large tiles.
_GPU_TILES = {"bilinear": (4, 64, 4), "pil": (2, 32, 2)}
_INTERPRETER_TILES = {"bilinear": (128, 128, 4), "pil": (128, 128, 4)}


@triton.jit
def _frame(frames_ptr, frame):
    """A frame's table row: its pixels as *uint8; height, width and element strides as int32
    (the launcher checks that every offset into the frame fits)."""
    row = frames_ptr + frame * _ROW
    src = tl.load(row).to(tl.pointer_type(tl.uint8))
    height = tl.load(row + 1).to(tl.int32)
    width = tl.load(row + 2).to(tl.int32)
    stride_h = tl.load(row + 3).to(tl.int32)
    stride_w = tl.load(row + 4).to(tl.int32)
    stride_c = tl.load(row + 5).to(tl.int32)
    return src, height, width, stride_h, stride_w, stride_c


@triton.jit
def _torch_source_index(o, in_size, out_size):
    """torch's compute_source_index_and_lambda (align_corners=False) for output indices `o`."""
    ratio = tl.div_rn(in_size.to(tl.float32), out_size.to(tl.float32))  # float(in) / out
    # scale * (o + 0.5) - 0.5, which torch's CPU build contracts into one fma, clamped at 0.
    src = tl.maximum(tl.fma(ratio, o.to(tl.float32) + 0.5, tl.full(o.shape, -0.5, tl.float32)), 0.0)
    i0 = tl.minimum(src.to(tl.int32), in_size - 1)  # src >= 0: truncation is floor
    l1 = tl.minimum(tl.maximum(src - i0.to(tl.float32), 0.0), 1.0)
    i1 = tl.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _bilinear_channel(p00, p01, p10, p11, wl0, wl1, hl0, hl1):
    """One channel at the four corners (uint8 pointers) -> torch's interpolated x / 255."""
    x00 = tl.div_rn(tl.load(p00).to(tl.float32), 255.0)
    x01 = tl.div_rn(tl.load(p01).to(tl.float32), 255.0)
    x10 = tl.div_rn(tl.load(p10).to(tl.float32), 255.0)
    x11 = tl.div_rn(tl.load(p11).to(tl.float32), 255.0)
    top = tl.fma(x00, wl0, x01 * wl1)
    bottom = tl.fma(x10, wl0, x11 * wl1)
    return tl.fma(top, hl0, bottom * hl1)


@triton.jit
def _store_normalized(plane_ptr, offsets, mask, x, mean, std):
    """(x - mean) / std, rounded once, into one output plane (fp32 or fp16)."""
    y = tl.div_rn(x - mean, std)
    tl.store(plane_ptr + offsets, y.to(plane_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bilinear_kernel(
    frames_ptr,  # *int64 (B, len(_HEADER)): one row per frame, see _HEADER
    out_ptr,  # *fp32 or *fp16 (B, 3, R, R), contiguous
    R,  # output side
    mean_r, mean_g, mean_b,  # ImageNet means, RGB (fp32)
    std_r, std_g, std_b,  # ImageNet stds, RGB (fp32)
    BLOCK_H: tl.constexpr,  # output rows per program
    BLOCK_W: tl.constexpr,  # output columns per program
):
    frame = tl.program_id(0)
    src, height, width, stride_h, stride_w, stride_c = _frame(frames_ptr, frame)
    oy = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ox = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    # Indices and weights per row and per column, not per pixel. Clamped to the frame, so the
    # loads need no mask, not even past R in the last tiles.
    y0, y1, hl0, hl1 = _torch_source_index(oy, height, R)
    x0, x1, wl0, wl1 = _torch_source_index(ox, width, R)
    row0 = src + (y0 * stride_h)[:, None]
    row1 = src + (y1 * stride_h)[:, None]
    col0 = (x0 * stride_w)[None, :]
    col1 = (x1 * stride_w)[None, :]
    hl0 = hl0[:, None]
    hl1 = hl1[:, None]
    wl0 = wl0[None, :]
    wl1 = wl1[None, :]
    p00 = row0 + col0
    p01 = row0 + col1
    p10 = row1 + col0
    p11 = row1 + col1

    plane = R * R
    out = out_ptr + frame.to(tl.int64) * 3 * plane
    offsets = oy[:, None] * R + ox[None, :]
    mask = (oy < R)[:, None] & (ox < R)[None, :]
    # RGB planes from the BGR frame: red is source channel 2, blue channel 0.
    r = 2 * stride_c
    red = _bilinear_channel(p00 + r, p01 + r, p10 + r, p11 + r, wl0, wl1, hl0, hl1)
    _store_normalized(out, offsets, mask, red, mean_r, std_r)
    g = stride_c
    green = _bilinear_channel(p00 + g, p01 + g, p10 + g, p11 + g, wl0, wl1, hl0, hl1)
    _store_normalized(out + plane, offsets, mask, green, mean_g, std_g)
    blue = _bilinear_channel(p00, p01, p10, p11, wl0, wl1, hl0, hl1)
    _store_normalized(out + 2 * plane, offsets, mask, blue, mean_b, std_b)


@triton.jit
def _clip8(acc):
    """Pillow's clip8: a fixed-point sum (its rounding half included) -> 0..255."""
    return tl.minimum(tl.maximum(acc >> _PRECISION_BITS, 0), 255)


@triton.jit
def _first_pass(pixels, mask, weights):
    """[M, N1, TAPS] uint8 pixels x [1, N1, TAPS] weights, summed over taps -> [M, N1] uint8."""
    values = tl.load(pixels, mask=mask, other=0).to(tl.int32)
    return _clip8(_HALF + tl.sum(values * weights, axis=2))


@triton.jit
def _pil_tile(
    src,  # *uint8: the frame
    first_stride,  # elements between source neighbours along the first pass's axis
    loop_stride,  # elements between source neighbours along the second pass's axis
    stride_c,  # elements between channels
    first_table,  # *int32: the first axis's table (_pil_axis_table)
    first_taps,  # its weights per output index
    o1,  # [N1] output indices along the first axis
    second_table,  # *int32: the second axis's table
    second_taps,
    o2,  # [N2] output indices along the second axis
    out,  # *fp32 or *fp16: the frame's (3, R, R) output
    out_stride1,  # output elements between neighbours along the first axis (1 or R)
    out_stride2,  # ... along the second axis
    R,
    mean_r, mean_g, mean_b,
    std_r, std_g, std_b,
    N1: tl.constexpr,
    N2: tl.constexpr,
    TAPS: tl.constexpr,  # power of 2 >= first_taps
):
    """Pillow's two passes for one tile, then to_tensor's /255 and normalize, stored.

    For each second-pass tap j, output (o2, o1) needs the first pass over window o1 of the
    source line s_first[o2] + j: one [N2, N1, TAPS] gather per channel, all taps at once,
    rounded to uint8 as Pillow's intermediate image is, then weighted into the output's sum.
    A line shared by neighbouring outputs is recomputed for each (about twice); in exchange
    every value stays in its thread's layout. Integer sums: Pillow's to the bit."""
    valid1 = o1 < R
    valid2 = o2 < R
    taps = tl.arange(0, TAPS)
    f_first = tl.load(first_table + o1, mask=valid1, other=0)
    f_count = tl.load(first_table + R + o1, mask=valid1, other=0)
    in_window = valid1[:, None] & (taps[None, :] < f_count[:, None])  # [N1, TAPS]
    f_weights = first_table + 2 * R + (o1 * first_taps)[:, None] + taps[None, :]
    f_weights = tl.load(f_weights, mask=in_window, other=0)[None, :, :]
    f_offsets = (f_first[:, None] + taps[None, :]) * first_stride
    s_first = tl.load(second_table + o2, mask=valid2, other=0)
    s_count = tl.load(second_table + R + o2, mask=valid2, other=0)
    s_weights = second_table + 2 * R + o2 * second_taps

    acc_b = tl.zeros((N2, N1), tl.int32)
    acc_g = tl.zeros((N2, N1), tl.int32)
    acc_r = tl.zeros((N2, N1), tl.int32)
    for j in range(0, second_taps):
        tap = valid2 & (j < s_count)
        w2 = tl.load(s_weights + j, mask=tap, other=0)[:, None]
        p = src + (((s_first + j) * loop_stride)[:, None, None] + f_offsets[None, :, :])
        m = tap[:, None, None] & in_window[None, :, :]
        acc_b += w2 * _first_pass(p, m, f_weights)
        acc_g += w2 * _first_pass(p + stride_c, m, f_weights)
        acc_r += w2 * _first_pass(p + 2 * stride_c, m, f_weights)

    offsets = o2[:, None] * out_stride2 + o1[None, :] * out_stride1
    mask = valid2[:, None] & valid1[None, :]
    plane = R * R  # RGB planes from the BGR frame
    red = tl.div_rn(_clip8(_HALF + acc_r).to(tl.float32), 255.0)
    _store_normalized(out, offsets, mask, red, mean_r, std_r)
    green = tl.div_rn(_clip8(_HALF + acc_g).to(tl.float32), 255.0)
    _store_normalized(out + plane, offsets, mask, green, mean_g, std_g)
    blue = tl.div_rn(_clip8(_HALF + acc_b).to(tl.float32), 255.0)
    _store_normalized(out + 2 * plane, offsets, mask, blue, mean_b, std_b)


@triton.jit
def _pil_kernel(
    frames_ptr,  # *int64 (B, len(_HEADER)): one row per frame, see _HEADER
    out_ptr,  # *fp32 or *fp16 (B, 3, R, R), contiguous
    R,  # output side
    mean_r, mean_g, mean_b,  # ImageNet means, RGB (fp32)
    std_r, std_g, std_b,  # ImageNet stds, RGB (fp32)
    BLOCK_H: tl.constexpr,  # output rows per program
    BLOCK_W: tl.constexpr,  # output columns per program
    TAPS: tl.constexpr,  # power of 2 >= every frame's first-pass taps
):
    frame = tl.program_id(0)
    src, height, width, stride_h, stride_w, stride_c = _frame(frames_ptr, frame)
    row = frames_ptr + frame * _ROW
    rows_table = tl.load(row + 6).to(tl.pointer_type(tl.int32))
    rows_taps = tl.load(row + 7).to(tl.int32)
    cols_table = tl.load(row + 8).to(tl.pointer_type(tl.int32))
    cols_taps = tl.load(row + 9).to(tl.int32)
    oy = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ox = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    out = out_ptr + frame.to(tl.int64) * 3 * R * R
    if tl.load(row + 10):  # vertical pass first
        _pil_tile(
            src, stride_h, stride_w, stride_c, rows_table, rows_taps, oy, cols_table, cols_taps, ox,
            out, R, 1, R, mean_r, mean_g, mean_b, std_r, std_g, std_b,
            BLOCK_H, BLOCK_W, TAPS,
        )  # fmt: skip
    else:
        _pil_tile(
            src, stride_w, stride_h, stride_c, cols_table, cols_taps, ox, rows_table, rows_taps, oy,
            out, 1, R, R, mean_r, mean_g, mean_b, std_r, std_g, std_b,
            BLOCK_W, BLOCK_H, TAPS,
        )  # fmt: skip


def _pillow_vertical_first(height: int, width: int, resolution: int) -> bool:
    """Whether Pillow runs the vertical pass first for this frame.

    Pillow 13 does when the height shrinks by more than twice as many pixels as the width
    (ImagingResampleInner: "to make the horizontal pass faster"); earlier versions always start
    horizontal. The rounding between the passes makes the order visible, so the kernel follows
    the installed Pillow, and Pillow 13's rule without one."""
    shrink = height - resolution
    return _PILLOW_VERTICAL_FIRST and shrink > 0 and shrink > 2 * (width - resolution)


def _pil_axis_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, int]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc (Resample.c), bilinear filter.

    Returns int32 [first source index (out_size), tap count (out_size), weights (out_size,
    taps)] flat, and taps. Double precision in C's order of operations, so the fixed-point
    weights are Pillow's to the bit."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    taps = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)  # C's (int) truncates
    count = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - first
    inverse = 1.0 / filterscale
    weights = np.zeros((out_size, taps))
    total = np.zeros(out_size)
    for x in range(taps):  # column by column: the running total adds in Pillow's order
        t = np.abs((x + first - center + 0.5) * inverse)
        weights[:, x] = np.where((x < count) & (t < 1.0), 1.0 - t, 0.0)
        total += weights[:, x]
    weights /= np.where(total != 0.0, total, 1.0)[:, None]
    fixed = np.floor(0.5 + weights * (1 << 22))  # (int)(0.5 + w * (1 << PRECISION_BITS)), w >= 0
    return np.concatenate([first, count, fixed.ravel()]).astype(np.int32), taps


@functools.lru_cache(maxsize=256)
def _pil_axis_table(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """_pil_axis_coefficients on `device`, once per (in_size, out_size, device).

    An evicted table is freed while a launch may still read it: safe, since the caching
    allocator reuses its memory only for work queued after that launch on the same stream."""
    table, taps = _pil_axis_coefficients(in_size, out_size)
    return torch.from_numpy(table).to(device), taps


def _check_frames(frames: list[torch.Tensor]) -> torch.device:
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError("frames must be a non-empty list of (H, W, 3) uint8 tensors")
    device = None
    for i, frame in enumerate(frames):
        if not isinstance(frame, torch.Tensor):
            raise ValueError(f"frame {i} must be a torch.Tensor, got {type(frame).__name__}")
        check_frame(frame.shape, frame.dtype)
        if device is None:
            device = frame.device
        elif frame.device != device:
            raise ValueError(
                f"all frames must be on one device: frame 0 is on {device}, frame {i} on {frame.device}"
            )
    if device.type != "cuda" and not (_INTERPRETED and device.type == "cpu"):
        raise ValueError(
            f"frames must be CUDA tensors (CPU tensors only under TRITON_INTERPRET=1), got {device}"
        )
    return device


def _output(
    out: torch.Tensor | None,
    out_dtype: torch.dtype | None,
    shape: tuple[int, ...],
    device: torch.device,
) -> torch.Tensor:
    if out is None:
        dtype = torch.float32 if out_dtype is None else out_dtype
        if dtype not in OUT_DTYPES:
            raise ValueError(f"out_dtype must be torch.float32 or torch.float16, got {dtype}")
        return torch.empty(shape, dtype=dtype, device=device)
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {list(shape)}, got {list(out.shape)}")
    if out.dtype not in OUT_DTYPES:
        raise ValueError(f"out must be float32 or float16, got {out.dtype}")
    if out_dtype is not None and out_dtype != out.dtype:
        raise ValueError(f"out_dtype {out_dtype} contradicts out's dtype {out.dtype}")
    if out.device != device:
        raise ValueError(f"out must be on the frames' device {device}, got {out.device}")
    if not out.is_contiguous():
        raise ValueError("out must be contiguous (B, 3, R, R)")
    return out


def preprocess_frames(
    frames: list[torch.Tensor],
    resolution: int,
    *,
    mode: str = "bilinear",
    out_dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """BGR uint8 frames of any sizes -> normalized RGB (B, 3, resolution, resolution), one launch.

    Args:
        frames: (H, W, 3) uint8 BGR tensors, any sizes and strides, all on one CUDA device (CPU
            under TRITON_INTERPRET=1); each is read where it is.
        resolution: the engine's square input side R.
        mode: "bilinear" (torch's F.interpolate, rfdetr predict()'s resize) or "pil" (Pillow's
            antialiased bilinear).
        out_dtype: torch.float32 or torch.float16; default out's dtype, else float32.
        out: where to write, a contiguous (B, 3, R, R) float32/float16 tensor on the frames'
            device; allocated when None.

    Returns:
        `out`, written on the device's current stream (no synchronization).

    Raises:
        ValueError (InvalidImageError for a frame that is not a non-empty uint8 HxWx3 image)
        naming the problem.
    """
    device = _check_frames(frames)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    out = _output(out, out_dtype, (len(frames), 3, resolution, resolution), device)

    rows = []
    first_taps = 1  # the most first-pass taps over the batch (pil)
    for i, frame in enumerate(frames):
        height, width = frame.shape[0], frame.shape[1]
        last = (height - 1) * frame.stride(0) + (width - 1) * frame.stride(1) + 2 * frame.stride(2)
        if last >= 2**31:
            raise ValueError(f"frame {i} spans {last + 1} bytes: the kernel's offsets are int32")
        row = [frame.data_ptr(), height, width, *frame.stride(), 0, 0, 0, 0, 0]
        if mode == "pil":
            rows_table, rows_taps = _pil_axis_table(height, resolution, device)
            cols_table, cols_taps = _pil_axis_table(width, resolution, device)
            vertical_first = _pillow_vertical_first(height, width, resolution)
            row[6:10] = [rows_table.data_ptr(), rows_taps, cols_table.data_ptr(), cols_taps]
            row[10] = int(vertical_first)
            first_taps = max(first_taps, rows_taps if vertical_first else cols_taps)
        rows.append(row)
    on_gpu = device.type == "cuda"
    # Pinned, so the copy is asynchronous; the caching host allocator keeps the buffer until
    # the copy has run.
    table = torch.tensor(rows, dtype=torch.int64, pin_memory=on_gpu).to(device, non_blocking=True)

    block_h, block_w, num_warps = (_GPU_TILES if on_gpu else _INTERPRETER_TILES)[mode]
    grid = (len(frames), triton.cdiv(resolution, block_h), triton.cdiv(resolution, block_w))
    meta = {"BLOCK_H": block_h, "BLOCK_W": block_w, "num_warps": num_warps}
    if mode == "pil":
        # All taps of a window in one gather; a power of 2, so a few compiled variants serve
        # every size. The batch's frames share it: next to a 4K frame (27 taps at R = 312), a
        # 1080p frame (15) gathers twice what it needs.
        meta["TAPS"] = triton.next_power_of_2(first_taps)
    kernel = _bilinear_kernel if mode == "bilinear" else _pil_kernel
    with torch.cuda.device(device) if on_gpu else contextlib.nullcontext():
        kernel[grid](table, out, resolution, *MEANS, *STDS, **meta)
    return out
