"""Every kept detection's COCO compressed counts string, on the device, from its run boundaries.

pycocotools' rleToString writes a mask's uncompressed counts c_0, c_1, ... (zeros first,
alternating, the last one the mask's final run) as one value each: c_i, or c_i - c_(i-2) for
i > 2; each value as 5-bit chunks, low first, + 48, bit 0x20 set on all chunks but the last,
stopping once the rest is 0 (or -1 with the chunk's sign bit 0x10 set): value v takes the least
n chunks with -2**(5n - 1) <= v < 2**(5n - 1).

With a mask's toggles t_0 < ... < t_(n-1) (backends.rle_kernel: run starts and ends, no
boundary between columns) and x_k = t_k for k < n, x_n = height * width, x_(-1) = 0, count i is
x_i - x_(i-1) for i < n, and count n (the final zeros) when it is > 0 (or n = 0: the empty
mask's [area]). Every count needs only x_(i-3)..x_i of its own mask, so each is independent:
the kernel gives every toggle and every detection's final slot (slot q of detection r: x index
q - start_r - r) one lane. Pass 1 (WRITE=False) adds up the characters of each block of slots;
the launcher's cumsum turns those into offsets; pass 2 (WRITE=True) writes each value's
characters at its offset and each detection's string end. The strings of a batch are one
array, detection r's being chars[offsets[r]:offsets[r + 1]]: only they need to reach the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from backends.mask_region_kernel import MIN_BATCH_PAD, Frames, MaskRegions, padded, persistent_programs
from backends.rle_kernel import MaskToggles

MAX_CHUNKS = 7  # int32 values: |v| < 2**31 <= 2**(5 * 7 - 1)


@dataclass
class CocoStrings:
    """The batch's COCO compressed counts strings, on the device."""

    chars: torch.Tensor  # (capacity,) uint8; detection r's string: chars[offsets[r]:offsets[r + 1]]
    offsets: torch.Tensor  # (R + 1,) int32; entries past the used rows + 1 are undefined
    total: torch.Tensor  # (1,) int32: characters of all strings
    capacity: int


def chunks_for(area: int) -> int:
    """Characters of the longest value in a frame of `area` pixels (every |count| <= area)."""
    return next(n for n in range(1, MAX_CHUNKS + 1) if area < 1 << (5 * n - 1))


@triton.jit
def _boundary(toggles_ptr, start, n, k, area, capacity):
    """x_k of a mask whose toggles are toggles[start:start + n]: 0 before, area at k = n."""
    inside = (k >= 0) & (k < n)
    value = tl.load(toggles_ptr + start + k, mask=inside & (start + k < capacity), other=0)
    return tl.where(k == n, area, value)


# Integers that vary with the batch are not specialized (see backends.rle_kernel's kernel).
@triton.jit(do_not_specialize=["batch", "capacity", "char_capacity", "search_steps"])
def _strings_kernel(
    toggles_ptr,  # *i32 (capacity,): every detection's toggles (backends.rle_kernel)
    ends_ptr,  # *i32 (R,): inclusive cumulative toggle counts
    table_ptr,  # *i32 (R, 8): detection table (frame first)
    frames_ptr,  # *i32 (B, 2): (height, width)
    counts_ptr,  # *i32 (B,): detections per frame (their sum: rows in use)
    totals_ptr,  # *i32 (blocks,): pass 1 writes characters per used block of slots (others: 0)
    block_ends_ptr,  # *i32 (blocks,): their inclusive cumsum (pass 2 reads)
    chars_ptr,  # *u8 (char_capacity,): pass 2 writes the strings
    offsets_ptr,  # *i32 (R + 1,): pass 2 writes where each string starts and ends
    batch,
    capacity,  # room in toggles_ptr
    char_capacity,
    search_steps,  # binary search steps over the rows: bit length of R
    B_PAD: tl.constexpr,
    BLOCK: tl.constexpr,  # slots per block
    CHUNKS: tl.constexpr,  # the longest value's characters (chunks_for the largest frame)
    WRITE: tl.constexpr,  # False: pass 1 (count), True: pass 2 (write)
):
    frames = tl.arange(0, B_PAD)
    rows_used = tl.sum(tl.load(counts_ptr + frames, mask=frames < batch, other=0), axis=0)
    last_row = tl.maximum(rows_used - 1, 0)
    toggles_used = tl.minimum(tl.where(rows_used > 0, tl.load(ends_ptr + last_row), 0), capacity)
    slots_used = toggles_used + rows_used
    lanes = tl.arange(0, BLOCK)
    if WRITE:
        if tl.program_id(0) == 0:
            tl.store(offsets_ptr, 0)
    # Blocks past the used slots keep their 0 total (the launcher's zeros).
    for block in range(tl.program_id(0), tl.cdiv(slots_used, BLOCK), tl.num_programs(0)):
        slot = block * BLOCK + lanes
        used = slot < slots_used
        # The row owning each slot: the number of rows r with ends[r] + r + 1 <= slot.
        lo = tl.zeros([BLOCK], tl.int32)
        hi = tl.zeros([BLOCK], tl.int32) + rows_used
        for _ in range(search_steps):
            active = lo < hi
            mid = (lo + hi) // 2
            slot_end = tl.load(ends_ptr + mid, mask=active, other=0) + mid + 1
            lo = tl.where(active & (slot_end <= slot), mid + 1, lo)
            hi = tl.where(active & (slot_end > slot), mid, hi)
        row = tl.minimum(lo, last_row)
        start = tl.load(ends_ptr + row - 1, mask=row > 0, other=0)
        n = tl.load(ends_ptr + row) - start
        i = slot - start - row
        frame = tl.load(table_ptr + row * 8, mask=used, other=0)
        area = tl.load(frames_ptr + frame * 2) * tl.load(frames_ptr + frame * 2 + 1)
        x0 = _boundary(toggles_ptr, start, n, i, area, capacity)
        x1 = _boundary(toggles_ptr, start, n, i - 1, area, capacity)
        x2 = _boundary(toggles_ptr, start, n, i - 2, area, capacity)
        x3 = _boundary(toggles_ptr, start, n, i - 3, area, capacity)
        count = x0 - x1
        value = tl.where(i > 2, count - (x2 - x3), count)
        present = used & ((i < n) | (count > 0))
        magnitude = tl.where(value < 0, ~value, value)
        length = tl.zeros([BLOCK], tl.int32) + 1
        for k in tl.static_range(1, CHUNKS):
            length += (magnitude >= (1 << (5 * k - 1))).to(tl.int32)
        length = tl.where(present, length, 0)
        if WRITE:
            base = tl.load(block_ends_ptr + block) - tl.load(totals_ptr + block)
            offset = base + tl.cumsum(length, axis=0) - length
            for k in tl.static_range(CHUNKS):
                more = tl.where(k < length - 1, 0x20, 0)
                char = (((value >> (5 * k)) & 0x1F) | more) + 48
                place = offset + k
                tl.store(chars_ptr + place, char.to(tl.uint8), mask=(k < length) & (place < char_capacity))
            tl.store(offsets_ptr + row + 1, offset + length, mask=used & (i == n))
        else:
            tl.store(totals_ptr + block, tl.sum(length, axis=0))


def coco_strings(
    toggles: MaskToggles,
    regions: MaskRegions,
    frames: Frames,
    *,
    block: int | None = None,
) -> CocoStrings:
    """Every kept detection's COCO compressed counts string: two launches and a cumsum, no sync.

    Args:
        toggles: the batch's run boundaries (backends.rle_kernel.mask_toggles). When they
            overflowed their room (ends[-1] > capacity), the strings are undefined: call again
            on toggles computed with enough room.
        regions: the batch's detection table (backends.mask_region_kernel).
        frames: the batch's frame geometry.
        block: slots per program step, a power of 2; default 1024 on a GPU, 16384 in the
            interpreter (each step costs milliseconds there).

    Returns:
        The strings, byte-identical to pycocotools' for the same masks.
    """
    device = toggles.toggles.device
    rows = regions.table.shape[0]
    if toggles.ends.shape != (rows,) or toggles.toggles.dtype != torch.int32:
        raise ValueError(
            f"expected int32 toggles with one end per detection row ({rows}), got {toggles.toggles.dtype} "
            f"and ends of shape {list(toggles.ends.shape)}"
        )
    if block is None:
        block = 1024 if device.type == "cuda" else 1 << 14
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of 2, got {block}")
    batch = len(frames.image_sizes)
    chunks = chunks_for(max((h * w for h, w in frames.image_sizes), default=1))
    slot_capacity = toggles.capacity + rows
    char_capacity = chunks * slot_capacity
    num_blocks = triton.cdiv(slot_capacity, block)
    chars = torch.empty((max(char_capacity, 1),), dtype=torch.uint8, device=device)
    offsets = torch.empty((rows + 1,), dtype=torch.int32, device=device)
    if rows == 0:
        offsets.zero_()
        return CocoStrings(chars, offsets, torch.zeros((1,), dtype=torch.int32, device=device), char_capacity)
    totals = torch.zeros((num_blocks,), dtype=torch.int32, device=device)
    block_ends = torch.empty((num_blocks,), dtype=torch.int32, device=device)
    grid = (min(num_blocks, persistent_programs(device)),)

    def launch(write: bool) -> None:
        _strings_kernel[grid](
            toggles.toggles, toggles.ends, regions.table, frames.sizes, regions.counts,
            totals, block_ends, chars, offsets,
            batch, toggles.capacity, char_capacity, rows.bit_length(),
            B_PAD=padded(batch, MIN_BATCH_PAD),
            BLOCK=block,
            CHUNKS=chunks,
            WRITE=write,
            num_warps=4,
        )

    launch(write=False)
    torch.cumsum(totals, dim=0, dtype=torch.int32, out=block_ends)
    launch(write=True)
    return CocoStrings(chars, offsets, block_ends[-1:], char_capacity)
