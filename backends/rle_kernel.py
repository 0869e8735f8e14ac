"""Each kept detection's mask as COCO-order run boundaries, straight from its low-res logits.

The reference (backends.postprocess.upsample_mask) upsamples the (h, w) logits to the frame with
F.interpolate(bilinear, align_corners=False) and keeps > 0; COCO RLE then walks the mask column
by column (flat index x * height + y). This kernel evaluates the same interpolation only inside
each mask's region (backends.mask_region_kernel: outside it every pixel is 0) and writes the
flat indices where the mask toggles in that order: run starts and run ends (exclusive), never a
dense mask. Those are exactly the boundaries of COCO's runs: a run that goes on from the bottom
of column x to the top of column x + 1 has no boundary there. Column x + 1 owns that index, (x +
1) * height: for a region spanning the whole height, its row 0 is compared with the bottom pixel
of column x, and column x writes no toggle at row height (except the region's last column).

The arithmetic is torch's, to the bit, so the > 0 decisions match:
- scale = float32(h) / height (host), src = fma(scale, y + 0.5, -0.5) clamped at 0, the tap
  row int(src), the next one unless it is the last, lambda = src - row (torch's
  area_pixel_compute_source_index, contracted to an fma as nvcc and gcc compile it);
- value = fma(h0, fma(w0, a, w1 * b), h1 * fma(w0, c, w1 * d)): upsample_bilinear2d's CUDA
  kernel and its CPU kernel (generic path) as compiled, fmas explicit here;
- torch's CPU kernel uses another order for outputs with height + width <= 128 (its
  channels-last path): fma(d, h1 * w1, fma(c, h1 * w0, fma(a, h0 * w0, b * (h0 * w1)))). The
  kernel follows it for such frames when the tensors are on the CPU (the interpreter).

Work items are (detection, group of BLOCK_X columns of its region), run by a persistent grid.
Pass 1 (WRITE=False) counts each item's toggles per column, keeps those counts and adds them
to its detection's total; the launcher turns the totals into offsets (torch.cumsum); pass 2
(WRITE=True) writes every toggle at its place: toggles of a detection are contiguous and
ascending, no atomics on positions, no sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from backends.mask_region_kernel import MIN_BATCH_PAD, Frames, MaskRegions, padded, persistent_programs

# torch's CPU upsample takes its channels-last path (another summation order) below this.
CPU_SMALL_OUTPUT = 128
# Pass 1 keeps per-column toggle counts for pass 2 while they fit in this many int32 (64 MiB);
# beyond, pass 2 counts again.
COLUMN_COUNTS_LIMIT = 1 << 24
# A tile whose taps all lie in at most this many logit rows may skip the interpolation.
UNIFORM_SPAN = 16
MIN_GROUP_PAD = 128  # column groups: 4096 columns of 32 (see MIN_BATCH_PAD)


@dataclass
class MaskToggles:
    """Every kept detection's toggles, on the device: detection r owns
    toggles[ends[r] - totals[r] : ends[r]], ascending flat column-major indices, an even number:
    run starts and (exclusive) run ends, alternating."""

    toggles: torch.Tensor  # (capacity,) int32; entries past ends[-1] are undefined
    ends: torch.Tensor  # (R,) int32, inclusive cumulative totals; rows past the used ones add 0
    groups: torch.Tensor  # (R, G + 1) int32: toggles per column group, then per detection
    capacity: int


@triton.jit
def _positive(
    plane,  # *fp32 (h, w): one detection's logits
    ys,  # [BLOCK_Y] i32 output rows, in [0, height)
    scale_h,
    mask_h,
    mask_w,
    col0,  # [BLOCK_X] i32 left tap column
    col1,  # [BLOCK_X] i32 right tap column
    wl0,  # [BLOCK_X] fp32 left tap weight
    wl1,  # [BLOCK_X] fp32 right tap weight
    small,  # this frame takes torch CPU's small-output order (only read when FOUR_TAP)
    FOUR_TAP: tl.constexpr,
):
    """[BLOCK_Y, BLOCK_X] bool: the upsampled logit > 0, torch's arithmetic."""
    src = tl.maximum(tl.fma(scale_h, ys.to(tl.float32) + 0.5, -0.5), 0.0)
    row0 = tl.minimum(src.to(tl.int32), mask_h - 1)
    row1 = row0 + tl.where(row0 < mask_h - 1, 1, 0)
    hl1 = src - row0.to(tl.float32)
    hl0 = 1.0 - hl1
    a = tl.load(plane + row0[:, None] * mask_w + col0[None, :])
    b = tl.load(plane + row0[:, None] * mask_w + col1[None, :])
    c = tl.load(plane + row1[:, None] * mask_w + col0[None, :])
    d = tl.load(plane + row1[:, None] * mask_w + col1[None, :])
    top = tl.fma(wl0[None, :], a, wl1[None, :] * b)
    bottom = tl.fma(wl0[None, :], c, wl1[None, :] * d)
    value = tl.fma(hl0[:, None], top, hl1[:, None] * bottom)
    if FOUR_TAP:
        w00 = hl0[:, None] * wl0[None, :]
        w01 = hl0[:, None] * wl1[None, :]
        w10 = hl1[:, None] * wl0[None, :]
        w11 = hl1[:, None] * wl1[None, :]
        value4 = tl.fma(d, w11, tl.fma(c, w10, tl.fma(a, w00, b * w01)))
        value = tl.where(small, value4, value)
    return value > 0.0


@triton.jit
def _column_taps(xs, width, scale_w, mask_w):
    """Left and right tap columns of output columns xs, and their weights (torch's arithmetic)."""
    src_x = tl.maximum(tl.fma(scale_w, tl.minimum(xs, width - 1).to(tl.float32) + 0.5, -0.5), 0.0)
    col0 = tl.minimum(src_x.to(tl.int32), mask_w - 1)
    col1 = col0 + tl.where(col0 < mask_w - 1, 1, 0)
    wl1 = src_x - col0.to(tl.float32)
    return col0, col1, 1.0 - wl1, wl1


@triton.jit
def _tap_row(y, scale_h, mask_h):
    """The upper tap row of output row y (torch's source index, truncated)."""
    src = tl.maximum(tl.fma(scale_h, y.to(tl.float32) + 0.5, -0.5), 0.0)
    return tl.minimum(src.to(tl.int32), mask_h - 1)


@triton.jit
def _column_toggles(
    plane, ys, y_lo, y_hi, height, scale_h, mask_h, mask_w, col0, col1, wl0, wl1, in_x, small,
    join, no_end, FOUR_TAP: tl.constexpr, SPAN: tl.constexpr,
):
    """[BLOCK_Y, BLOCK_X] int32, 1 where the mask toggles at (ys, column): the toggles of a
    column are its y in [y_lo, y_hi + 1] where mask(y) != mask(y - 1), 0 outside the region,
    except that mask(y_lo - 1) is `join` (the bottom pixel of the column before, for a region
    spanning the whole height) and columns marked `no_end` have none at y_hi + 1.

    A tile whose every column has all its taps > 1e-30 (or all <= 0) is uniform per column:
    each of its pixels is a convex combination of those taps with a weight >= 1/4, so > 0 (or
    <= 0) whatever the rounding. Such tiles skip the interpolation; its taps are the logit
    rows from the upper tap of the tile's row above to the lower tap of its last row (at most
    SPAN rows, else the tile is interpolated)."""
    first = _tap_row(tl.maximum(tl.minimum(tl.min(ys) - 1, height - 1), 0), scale_h, mask_h)
    last = tl.minimum(_tap_row(tl.minimum(tl.max(ys), height - 1), scale_h, mask_h) + 1, mask_h - 1)
    uniform = tl.zeros([], tl.int32)
    positive = tl.zeros([ys.shape[0], col0.shape[0]], tl.int1)
    if last - first < SPAN:
        rows = first + tl.arange(0, SPAN)
        valid = (rows <= last)[:, None]
        left = tl.load(plane + rows[:, None] * mask_w + col0[None, :], mask=valid, other=1.0)
        right = tl.load(plane + rows[:, None] * mask_w + col1[None, :], mask=valid, other=1.0)
        above_zero = tl.min(tl.minimum(left, right), axis=0) > 1e-30
        left = tl.where(valid, left, -1.0)
        right = tl.where(valid, right, -1.0)
        at_most_zero = tl.max(tl.maximum(left, right), axis=0) <= 0.0
        uniform = (tl.sum((~(above_zero | at_most_zero) & in_x).to(tl.int32), axis=0) == 0).to(tl.int32)
        positive = tl.broadcast_to(above_zero[None, :], (ys.shape[0], col0.shape[0]))
    if uniform != 0:
        here = positive
        above = positive
    else:
        here = _positive(plane, tl.minimum(ys, height - 1), scale_h, mask_h, mask_w,
                         col0, col1, wl0, wl1, small, FOUR_TAP)
        above = _positive(plane, tl.maximum(tl.minimum(ys - 1, height - 1), 0), scale_h, mask_h, mask_w,
                          col0, col1, wl0, wl1, small, FOUR_TAP)
    here = here & (ys <= y_hi)[:, None]
    above = tl.where((ys == y_lo)[:, None], join[None, :], above & ((ys > y_lo) & (ys <= y_hi + 1))[:, None])
    rows = (ys < y_hi + 1)[:, None] | ((ys == y_hi + 1)[:, None] & ~no_end[None, :])
    return ((here != above) & rows & in_x[None, :]).to(tl.int32)


# Integers that vary with the batch (frames, the widest frame, the detections) are not
# specialized: triton would compile a variant for each value class (1, multiples of 16, other)
# on first sight, in every server instance, while requests wait.
@triton.jit(do_not_specialize=["batch", "num_groups", "capacity"])
def _toggles_kernel(
    masks_ptr,  # *fp32 (B, Q, h, w): mask logits
    table_ptr,  # *i32 (R, 8): detection table (frame, query, ...)
    regions_ptr,  # *i32 (R, 4): y_lo, y_hi, x_lo, x_hi
    counts_ptr,  # *i32 (B,): detections per frame (their sum: rows in use)
    frames_ptr,  # *i32 (B, 2): (height, width)
    scales_ptr,  # *fp32 (B, 2): bilinear scales
    groups_ptr,  # *i32 (R, G + 1): pass 1 writes toggles per group and adds them up per row
    columns_ptr,  # *i32 (R, G * BLOCK_X): pass 1 writes toggles per column (STORE_COLUMNS)
    ends_ptr,  # *i32 (R,): inclusive cumulative row totals (pass 2 reads)
    toggles_ptr,  # *i32 (capacity,): pass 2 writes
    batch,
    num_queries,
    mask_h,
    mask_w,
    num_groups,  # G: column groups per detection, cdiv(widest frame, BLOCK_X)
    capacity,
    B_PAD: tl.constexpr,
    G_PAD: tl.constexpr,  # next power of 2 >= G
    BLOCK_Y: tl.constexpr,
    BLOCK_X: tl.constexpr,
    WRITE: tl.constexpr,  # False: pass 1 (count), True: pass 2 (write)
    STORE_COLUMNS: tl.constexpr,  # pass 1 keeps per-column counts for pass 2 (else it recounts)
    FOUR_TAP: tl.constexpr,  # CPU tensors: frames with height + width <= 128 use the 4-tap order
    SPAN: tl.constexpr,  # logit rows a tile's uniformity test reads at most
):
    frames = tl.arange(0, B_PAD)
    rows_used = tl.sum(tl.load(counts_ptr + frames, mask=frames < batch, other=0), axis=0)
    lanes_x = tl.arange(0, BLOCK_X)
    lanes_y = tl.arange(0, BLOCK_Y)
    for item in range(tl.program_id(0), rows_used * num_groups, tl.num_programs(0)):
        row = item // num_groups
        group = item % num_groups
        y_lo = tl.load(regions_ptr + row * 4)
        y_hi = tl.load(regions_ptr + row * 4 + 1)
        x_lo = tl.load(regions_ptr + row * 4 + 2)
        x_hi = tl.load(regions_ptr + row * 4 + 3)
        x_start = x_lo + group * BLOCK_X
        if x_start <= x_hi:
            frame = tl.load(table_ptr + row * 8)
            query = tl.load(table_ptr + row * 8 + 1)
            plane = masks_ptr + (frame * num_queries + query) * mask_h * mask_w
            height = tl.load(frames_ptr + frame * 2)
            width = tl.load(frames_ptr + frame * 2 + 1)
            scale_h = tl.load(scales_ptr + frame * 2)
            scale_w = tl.load(scales_ptr + frame * 2 + 1)
            small = height + width <= 128

            xs = x_start + lanes_x
            in_x = xs <= x_hi
            col0, col1, wl0, wl1 = _column_taps(xs, width, scale_w, mask_w)
            # A region spanning the whole height: runs may go on from one column into the next.
            whole_height = (y_lo == 0) & (y_hi == height - 1)
            no_end = whole_height & (xs < x_hi)
            join = tl.zeros([BLOCK_X], tl.int1)
            if whole_height:
                p0, p1, pw0, pw1 = _column_taps(xs - 1, width, scale_w, mask_w)
                bottom = _positive(plane, tl.zeros([2], tl.int32) + (height - 1), scale_h, mask_h, mask_w,
                                   p0, p1, pw0, pw1, small, FOUR_TAP)
                join = (tl.max(bottom.to(tl.int32), axis=0) > 0) & (xs > x_lo)

            column_counts = columns_ptr + (row * num_groups + group) * BLOCK_X + lanes_x
            if WRITE and STORE_COLUMNS:
                per_column = tl.load(column_counts)
            else:
                per_column = tl.zeros([BLOCK_X], tl.int32)
                for y0 in range(y_lo, y_hi + 2, BLOCK_Y):
                    toggle = _column_toggles(plane, y0 + lanes_y, y_lo, y_hi, height, scale_h, mask_h, mask_w,
                                             col0, col1, wl0, wl1, in_x, small, join, no_end, FOUR_TAP, SPAN)
                    per_column += tl.sum(toggle, axis=0)

            group_row = groups_ptr + row * (num_groups + 1)
            if WRITE:
                groups = tl.arange(0, G_PAD)
                before = tl.load(group_row + groups, mask=groups < group, other=0)
                row_start = tl.load(ends_ptr + row) - tl.load(group_row + num_groups)
                slot = row_start + tl.sum(before, axis=0) + tl.cumsum(per_column, axis=0) - per_column
                for y0 in range(y_lo, y_hi + 2, BLOCK_Y):
                    ys = y0 + lanes_y
                    toggle = _column_toggles(plane, ys, y_lo, y_hi, height, scale_h, mask_h, mask_w,
                                             col0, col1, wl0, wl1, in_x, small, join, no_end, FOUR_TAP, SPAN)
                    place = slot[None, :] + tl.cumsum(toggle, axis=0) - toggle
                    flat = xs[None, :] * height + ys[:, None]
                    tl.store(toggles_ptr + place, flat, mask=(toggle != 0) & (place < capacity))
                    slot += tl.sum(toggle, axis=0)
            else:
                if STORE_COLUMNS:
                    tl.store(column_counts, per_column)
                total = tl.sum(per_column, axis=0)
                tl.store(group_row + group, total)
                tl.atomic_add(group_row + num_groups, total)


def mask_toggles(
    masks: torch.Tensor,
    regions: MaskRegions,
    frames: Frames,
    *,
    capacity: int | None = None,
    blocks: tuple[int, int] | None = None,
) -> MaskToggles:
    """Toggles of every kept detection's upsampled mask: two launches and a cumsum, no sync.

    Args:
        masks: (B, Q, h, w) float32 mask logits.
        regions: the batch's detection table and regions (backends.mask_region_kernel).
        frames: the batch's frame geometry.
        capacity: room for toggles. When a batch needs more (MaskToggles.ends[-1] > capacity),
            the toggles past it are not written: call again with that capacity. Default: 4 per
            column of every detection slot at the widest frame, within [2**12, 2**22].
        blocks: (BLOCK_Y, BLOCK_X) powers of 2, the tile of output rows x columns; default
            32 x 32 on a GPU, the whole frame (up to 256 x 256) in the interpreter.
    """
    batch, num_queries, mask_h, mask_w = masks.shape
    rows = regions.table.shape[0]
    device = masks.device
    interpreted = device.type == "cpu"
    max_height = max((h for h, _ in frames.image_sizes), default=1)
    max_width = max((w for _, w in frames.image_sizes), default=1)
    if blocks is None:
        blocks = (
            (min(triton.next_power_of_2(max_height + 1), 256), min(triton.next_power_of_2(max_width), 256))
            if interpreted
            else (32, 32)
        )
    block_y, block_x = blocks
    num_groups = triton.cdiv(max_width, block_x)
    if capacity is None:
        capacity = min(max(4 * rows * max_width, 1 << 12), 1 << 22)
    groups = torch.zeros((rows, num_groups + 1), dtype=torch.int32, device=device)
    store_columns = rows * num_groups * block_x <= COLUMN_COUNTS_LIMIT
    columns = torch.empty((rows * num_groups * block_x if store_columns else 1,), dtype=torch.int32, device=device)
    toggles = torch.empty((max(capacity, 1),), dtype=torch.int32, device=device)
    ends = torch.zeros((rows,), dtype=torch.int32, device=device)
    if rows == 0:
        return MaskToggles(toggles, ends, groups, capacity)
    masks = masks.contiguous()
    four_tap = interpreted and any(h + w <= CPU_SMALL_OUTPUT for h, w in frames.image_sizes)
    grid = (min(rows * num_groups, persistent_programs(device)),)

    def launch(write: bool) -> None:
        _toggles_kernel[grid](
            masks, regions.table, regions.regions, regions.counts, frames.sizes, frames.scales,
            groups, columns, ends, toggles,
            batch, num_queries, mask_h, mask_w, num_groups, capacity,
            B_PAD=padded(batch, MIN_BATCH_PAD),
            G_PAD=padded(num_groups, MIN_GROUP_PAD),
            BLOCK_Y=block_y,
            BLOCK_X=block_x,
            WRITE=write,
            STORE_COLUMNS=store_columns,
            FOUR_TAP=four_tap,
            SPAN=UNIFORM_SPAN,
            num_warps=4,
            enable_fp_fusion=False,
        )

    launch(write=False)
    torch.cumsum(groups[:, num_groups], dim=0, dtype=torch.int32, out=ends)
    launch(write=True)
    return MaskToggles(toggles, ends, groups, capacity)
