"""Where each kept detection's mask can be positive, in its frame's pixels, and the batch's
detection table, in one launch.

The upsampled mask (bilinear, align_corners=False, as backends.postprocess.upsample_mask) is a
convex combination of at most 2 x 2 low-res logits, so an output pixel can be > 0 only when one
of its taps is: its source row (and column) must fall in the bounding box of the positive
low-res logits, grown by one low-res pixel towards the origin. The kernel finds that bounding
box by scanning each kept detection's (h, w) logits, maps it to output pixels with a one-pixel
margin (float rounding of the source coordinate can never move it that far), and writes it as
the region the RLE kernel (backends.rle_kernel) evaluates; outside it every pixel is 0.

It also gathers the selection's rows (backends.select_kernel, per frame) into one table for the
whole batch, in frame order: global row r is frame b's row r - (rows of frames before b).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import triton
import triton.language as tl

# Columns of the detection table, int32; float32 values travel as their bits.
DET_FRAME, DET_QUERY, DET_CLASS, DET_SCORE, DET_BOX = 0, 1, 2, 3, 4  # the box: columns 4..7
DET_FIELDS = 8
# Vector widths over frames and column groups start here: fewer kernel variants to compile
# while a server sees batches of different sizes.
MIN_BATCH_PAD = 32


@dataclass
class Frames:
    """A batch's frame geometry, on the device for the kernels and on the host for launchers."""

    sizes: torch.Tensor  # (B, 2) int32 (height, width)
    scales: torch.Tensor  # (B, 2) float32 bilinear scales: float32(h) / height, float32(w) / width
    image_sizes: list[tuple[int, int]]  # the same sizes, host side

    @classmethod
    def build(cls, image_sizes: list[tuple[int, int]], mask_size: tuple[int, int], device: torch.device) -> Frames:
        """Refuses empty frames and frames whose pixels overflow int32 flat indices."""
        sizes = [(int(h), int(w)) for h, w in image_sizes]
        for height, width in sizes:
            if height < 1 or width < 1 or height * width >= 2**31:
                raise ValueError(f"frame size must be >= 1x1 with < 2**31 pixels, got {height}x{width}")
        as_array = np.asarray(sizes, dtype=np.int32).reshape(-1, 2)
        return cls(
            sizes=_to_device(torch.from_numpy(as_array), device),
            scales=_to_device(torch.from_numpy(bilinear_scales(mask_size, as_array)), device),
            image_sizes=sizes,
        )


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on the device, queued from pinned memory (no wait for the GPU)."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def bilinear_scales(mask_size: tuple[int, int], image_sizes: np.ndarray) -> np.ndarray:
    """(B, 2) float32 (h / height, w / width) as torch's upsample computes them (float32)."""
    mask_h, mask_w = (np.float32(v) for v in mask_size)
    sizes = np.asarray(image_sizes, dtype=np.float32).reshape(-1, 2)
    return np.stack([mask_h / sizes[:, 0], mask_w / sizes[:, 1]], axis=1).astype(np.float32)


@dataclass
class MaskRegions:
    """The batch's kept detections, frame after frame, and their masks' regions, on the device.

    Rows past counts.sum() are unused (their contents are undefined)."""

    table: torch.Tensor  # (R, DET_FIELDS) int32: frame, query, class, score bits, xyxy bits
    regions: torch.Tensor  # (R, 4) int32: y_lo, y_hi, x_lo, x_hi, inclusive; empty: y_hi < y_lo
    counts: torch.Tensor  # (B,) int32: rows per frame (the selection's)


# The batch size is not specialized (see backends.rle_kernel's kernel).
@triton.jit(do_not_specialize=["batch"])
def _regions_kernel(
    rows_ptr,  # *i32 (B, K, 8): the selection's rows per frame (query, class, score, box)
    counts_ptr,  # *i32 (B,): rows kept per frame
    masks_ptr,  # *fp32 (B, Q, h, w): mask logits
    frames_ptr,  # *i32 (B, 2): (height, width)
    scales_ptr,  # *fp32 (B, 2): float32(h) / height, float32(w) / width
    table_ptr,  # *i32 (R, 8): output detection table
    regions_ptr,  # *i32 (R, 4): output regions
    batch,
    rows_per_frame,  # K
    num_queries,  # Q
    mask_h,
    mask_w,
    B_PAD: tl.constexpr,  # next power of 2 >= B
    BLOCK_H: tl.constexpr,  # logit rows scanned per step
    BLOCK_W: tl.constexpr,  # next power of 2 >= w
):
    frames = tl.arange(0, B_PAD)
    counts = tl.load(counts_ptr + frames, mask=frames < batch, other=0)
    ends = tl.cumsum(counts, axis=0)
    fields = tl.arange(0, 8)
    cols = tl.arange(0, BLOCK_W)
    for row in range(tl.program_id(0), tl.sum(counts, axis=0), tl.num_programs(0)):
        frame = tl.sum((ends <= row).to(tl.int32), axis=0)
        first = tl.sum(tl.where(frames == frame, ends - counts, 0), axis=0)
        source = rows_ptr + (frame * rows_per_frame + row - first) * 8
        values = tl.load(source + fields - 1, mask=fields > 0, other=0)
        values = tl.where(fields == 0, frame, values)
        tl.store(table_ptr + row * 8 + fields, values)

        query = tl.sum(tl.where(fields == 1, values, 0), axis=0)
        plane = masks_ptr + (frame * num_queries + query) * mask_h * mask_w
        y_min = tl.zeros([], tl.int32) + mask_h
        y_max = tl.zeros([], tl.int32) - 1
        x_min = tl.zeros([], tl.int32) + mask_w
        x_max = tl.zeros([], tl.int32) - 1
        for y0 in range(0, mask_h, BLOCK_H):
            ys = y0 + tl.arange(0, BLOCK_H)
            inside = (ys < mask_h)[:, None] & (cols < mask_w)[None, :]
            logits = tl.load(plane + ys[:, None] * mask_w + cols[None, :], mask=inside, other=0.0)
            positive = logits > 0.0
            y_min = tl.minimum(y_min, tl.min(tl.where(positive, ys[:, None], mask_h)))
            y_max = tl.maximum(y_max, tl.max(tl.where(positive, ys[:, None], -1)))
            x_min = tl.minimum(x_min, tl.min(tl.where(positive, cols[None, :], mask_w)))
            x_max = tl.maximum(x_max, tl.max(tl.where(positive, cols[None, :], -1)))

        # Output y can be > 0 only if floor(src(y)) is in [y_min - 1, y_max], src(y) =
        # scale * (y + 0.5) - 0.5: y in [ceil(t0), ceil(t1) - 1] below; one pixel of margin.
        height = tl.load(frames_ptr + frame * 2)
        width = tl.load(frames_ptr + frame * 2 + 1)
        scale_h = tl.load(scales_ptr + frame * 2)
        scale_w = tl.load(scales_ptr + frame * 2 + 1)
        t0 = (y_min.to(tl.float32) - 0.5) / scale_h - 0.5
        t1 = (y_max.to(tl.float32) + 1.5) / scale_h - 0.5
        s0 = (x_min.to(tl.float32) - 0.5) / scale_w - 0.5
        s1 = (x_max.to(tl.float32) + 1.5) / scale_w - 0.5
        found = y_max >= 0
        y_lo = tl.where(found, tl.maximum(t0.to(tl.int32) - 1, 0), 0)
        y_hi = tl.where(found, tl.minimum(t1.to(tl.int32) + 1, height - 1), -1)
        x_lo = tl.where(found, tl.maximum(s0.to(tl.int32) - 1, 0), 0)
        x_hi = tl.where(found, tl.minimum(s1.to(tl.int32) + 1, width - 1), -1)
        region = regions_ptr + row * 4
        tl.store(region + 0, y_lo)
        tl.store(region + 1, y_hi)
        tl.store(region + 2, x_lo)
        tl.store(region + 3, x_hi)


def padded(n: int, minimum: int) -> int:
    """The next power of 2 >= n, at least minimum."""
    return max(triton.next_power_of_2(n), minimum)


@cache
def persistent_programs(device: torch.device) -> int:
    """Programs for a persistent grid: 8 per SM on a GPU (the RLE kernel's 4 warps and 64
    registers fit 8 per SM), 1 in the interpreter (each program instance costs milliseconds)."""
    if device.type != "cuda":
        return 1
    return 8 * torch.cuda.get_device_properties(device).multi_processor_count


def mask_regions(rows: torch.Tensor, counts: torch.Tensor, masks: torch.Tensor, frames: Frames) -> MaskRegions:
    """The detection table and mask regions of a batch's selection.

    Args:
        rows: (B, K, 8) int32 selected rows (backends.select_kernel.Selection.rows).
        counts: (B,) int32 rows kept per frame.
        masks: (B, Q, h, w) float32 mask logits.
        frames: the batch's frame geometry (its scales built for this h, w).
    """
    if masks.dim() != 4 or masks.dtype != torch.float32:
        raise ValueError(f"masks must be (B, Q, h, w) float32, got {list(masks.shape)} {masks.dtype}")
    batch, num_queries, mask_h, mask_w = masks.shape
    if rows.dim() != 3 or rows.shape[0] != batch or rows.shape[2] != 8 or rows.dtype != torch.int32:
        raise ValueError(f"rows must be ({batch}, K, 8) int32, got {list(rows.shape)} {rows.dtype}")
    if counts.shape != (batch,) or len(frames.image_sizes) != batch:
        raise ValueError(f"counts and frames must cover the {batch} frames of masks")
    if len({t.device for t in (rows, counts, masks, frames.sizes, frames.scales)}) != 1:
        raise ValueError("rows, counts, masks and frames must be on one device")
    if mask_h * mask_w == 0 or masks.numel() >= 2**31:
        raise ValueError(f"masks must have 1..2**31 - 1 elements, got {list(masks.shape)}")
    device = masks.device
    capacity = batch * rows.shape[1]
    table = torch.empty((capacity, DET_FIELDS), dtype=torch.int32, device=device)
    regions = torch.empty((capacity, 4), dtype=torch.int32, device=device)
    if capacity == 0:
        return MaskRegions(table, regions, counts)
    block_w = triton.next_power_of_2(mask_w)
    interpreted = device.type == "cpu"
    block_h = triton.next_power_of_2(mask_h) if interpreted else max(1, 4096 // block_w)
    grid = (min(capacity, persistent_programs(device)),)
    _regions_kernel[grid](
        rows, counts, masks.contiguous(), frames.sizes, frames.scales, table, regions,
        batch, rows.shape[1], num_queries, mask_h, mask_w,
        B_PAD=padded(batch, MIN_BATCH_PAD),
        BLOCK_H=min(block_h, triton.next_power_of_2(mask_h)),
        BLOCK_W=block_w,
        num_warps=4,
        enable_fp_fusion=False,
    )
    return MaskRegions(table, regions, counts)
