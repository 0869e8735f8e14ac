"""Detection selection on the device, one launch for a batch: rfdetr's top num_select over the
flattened (query x class) grid, `score > threshold`, the class-name rule and boxes in pixels.

The reference is backends.postprocess.select_detections (one frame); this is the same selection
for (B, Q, C) class probabilities in one Triton kernel, one program per frame:
1. count the candidates, scores strictly above the threshold (compared as float32, like torch);
2. every candidate ranks above every non-candidate, so the kept rows are the first min(n, k)
   candidates in the reference order (descending score, then ascending flat index). Each
   candidate gets a unique int64 key, (score bits << IDX_BITS) | (IDX_MASK - flat index), whose
   descending order is that order. When more than CAP candidates pass (a low threshold), a
   binary search over the key bits finds the k-th largest key first, so at most CAP remain;
3. the remaining keys are ranked against each other in CAP x CHUNK tiles; a row's output
   position is the number of kept rows (named, not NaN) ranked above it (the class-name rule
   drops rows after the top-k, without moving the others);
4. boxes: normalized cxcywh -> xyxy in the frame's pixels, clamped, with the reference's float32
   operations (backends.postprocess.boxes_to_pixels).

The sigmoid stays in torch (`labels.sigmoid()`): the scores must be bit-identical to the
reference's, and torch's own sigmoid on the same device is the only way to be sure of that.
A NaN score ranks first, as in torch's sort, and is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

# Columns of a selected row, int32; float32 values travel as their bits.
ROW_QUERY, ROW_CLASS, ROW_SCORE, ROW_BOX = 0, 1, 2, 3  # the box is columns 3..6 (x0, y0, x1, y1)
ROW_FIELDS = 8  # column 7 unused (rows stay 32-byte aligned)
MAX_NUM_SELECT = 4096  # the ranked candidates live in one program's registers
_NAN_BITS = tl.constexpr(0x7FC00000)  # every NaN score ranks as this one (first, as in torch.sort)


@dataclass
class Selection:
    """Every frame's kept rows, on the device, best score first.

    rows[b, :counts[b]] are frame b's detections: query id, class id, then the score and the
    xyxy box in pixels as float32 bits (view them with `.view(torch.float32)`)."""

    rows: torch.Tensor  # (B, K, ROW_FIELDS) int32, K = min(num_select, Q * C)
    counts: torch.Tensor  # (B,) int32


@triton.jit
def _score_keys(probs, idx, n_flat, idx_mask, IDX_BITS: tl.constexpr):
    """A tile's score bits (a NaN as _NAN_BITS) and sort keys: (score bits << IDX_BITS) |
    inverted flat index, so keys order by score descending, then flat index ascending."""
    p = tl.load(probs + idx, mask=idx < n_flat, other=0.0)
    bits = tl.where(p != p, _NAN_BITS, p.to(tl.int32, bitcast=True))
    key = (bits.to(tl.int64) << IDX_BITS) | (idx_mask - idx).to(tl.int64)
    return bits, key


@triton.jit
def _select_kernel(
    probs_ptr,  # *fp32 (B, N): class probabilities, N = Q * C, query-major
    dets_ptr,  # *fp32 (B, Q, 4): normalized cxcywh boxes
    frames_ptr,  # *i32 (B, 2): each frame's (height, width)
    has_name_ptr,  # *i8 (C,): 1 where the class id has a name
    scratch_ptr,  # *i64 (B, CAP): the candidates' keys
    rows_ptr,  # *i32 (B, K, ROW_FIELDS): output rows
    counts_ptr,  # *i32 (B,): output, rows kept per frame
    n_flat,  # N
    num_queries,  # Q
    num_classes,  # C
    k,  # min(num_select, N), also the row capacity K of each frame
    thr_bits,  # the score threshold's float32 bits
    IDX_BITS: tl.constexpr,  # bits of a flat index; keys are (score bits << IDX_BITS) | inverted index
    CAP: tl.constexpr,  # ranked candidates at most (>= k, a power of 2)
    CHUNK: tl.constexpr,  # candidates ranked against all others per step
    BLOCK: tl.constexpr,  # flat scores per tile
):
    frame = tl.program_id(0)
    probs = probs_ptr + frame.to(tl.int64) * n_flat
    lanes = tl.arange(0, BLOCK)
    idx_mask = (1 << IDX_BITS) - 1

    # 1. Candidates: score bits above the threshold's (a NaN counts, with the largest bits).
    n = tl.zeros([], tl.int32)
    for start in range(0, n_flat, BLOCK):
        idx = start + lanes
        bits, _ = _score_keys(probs, idx, n_flat, idx_mask, IDX_BITS)
        n += tl.sum(((bits > thr_bits) & (idx < n_flat)).to(tl.int32), axis=0)

    # 2. Too many to rank: the k-th largest key, one key bit at a time (keys are unique, so
    # exactly k keys are >= it). Otherwise every candidate is ranked (keys are >= 1).
    lowest = tl.full([], 1, tl.int64)
    if n > CAP:
        lowest = lowest * 0
        bit = tl.full([], 1 << (IDX_BITS + 30), tl.int64)  # keys are below 2**(IDX_BITS + 31)
        for _ in range(IDX_BITS + 31):
            trial = lowest | bit
            bit = bit >> 1
            above = tl.zeros([], tl.int32)
            for start in range(0, n_flat, BLOCK):
                idx = start + lanes
                bits, key = _score_keys(probs, idx, n_flat, idx_mask, IDX_BITS)
                hit = (bits > thr_bits) & (idx < n_flat) & (key >= trial)
                above += tl.sum(hit.to(tl.int32), axis=0)
            if above >= k:
                lowest = trial

    # Compact the keys to rank into scratch, in flat order.
    scratch = scratch_ptr + frame.to(tl.int64) * CAP
    m = tl.zeros([], tl.int32)
    for start in range(0, n_flat, BLOCK):
        idx = start + lanes
        bits, key = _score_keys(probs, idx, n_flat, idx_mask, IDX_BITS)
        keep = (bits > thr_bits) & (idx < n_flat) & (key >= lowest)
        slot = m + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        tl.store(scratch + slot, key, mask=keep)
        m += tl.sum(keep.to(tl.int32), axis=0)
    tl.debug_barrier()  # the stores above come from other threads of this program

    # 3. Rank: rank = keys above (all candidates), place = kept keys above (named, not NaN).
    slots = tl.arange(0, CAP)
    key_i = tl.load(scratch + slots, mask=slots < m, other=-1)
    flat_i = (idx_mask - (key_i & idx_mask)).to(tl.int32)
    class_i = flat_i % num_classes
    named_i = tl.load(has_name_ptr + class_i, mask=slots < m, other=0) != 0
    rank = tl.zeros([CAP], tl.int32)
    place = tl.zeros([CAP], tl.int32)
    for start in range(0, m, CHUNK):
        other = start + tl.arange(0, CHUNK)
        key_j = tl.load(scratch + other, mask=other < m, other=-1)
        flat_j = (idx_mask - (key_j & idx_mask)).to(tl.int32)
        named_j = tl.load(has_name_ptr + flat_j % num_classes, mask=other < m, other=0) != 0
        kept_j = named_j & ((key_j >> IDX_BITS).to(tl.int32) != _NAN_BITS)
        above = key_j[None, :] > key_i[:, None]
        rank += tl.sum(above.to(tl.int32), axis=1)
        place += tl.sum((above & kept_j[None, :]).to(tl.int32), axis=1)
    score_bits = (key_i >> IDX_BITS).to(tl.int32)
    kept = (slots < m) & (rank < k) & named_i & (score_bits != _NAN_BITS)

    # 4. Boxes, as backends.postprocess.boxes_to_pixels.
    query_i = flat_i // num_classes
    det = dets_ptr + (frame.to(tl.int64) * num_queries + query_i) * 4
    cx = tl.load(det + 0, mask=kept, other=0.0)
    cy = tl.load(det + 1, mask=kept, other=0.0)
    w = tl.load(det + 2, mask=kept, other=0.0)
    h = tl.load(det + 3, mask=kept, other=0.0)
    half_w = 0.5 * tl.maximum(w, 0.0)
    half_h = 0.5 * tl.maximum(h, 0.0)
    height = tl.load(frames_ptr + frame * 2).to(tl.float32)
    width = tl.load(frames_ptr + frame * 2 + 1).to(tl.float32)
    x0 = tl.minimum(tl.maximum((cx - half_w) * width, 0.0), width)
    y0 = tl.minimum(tl.maximum((cy - half_h) * height, 0.0), height)
    x1 = tl.minimum(tl.maximum((cx + half_w) * width, 0.0), width)
    y1 = tl.minimum(tl.maximum((cy + half_h) * height, 0.0), height)

    row = rows_ptr + (frame.to(tl.int64) * k + place) * 8
    tl.store(row + 0, query_i, mask=kept)
    tl.store(row + 1, class_i, mask=kept)
    tl.store(row + 2, score_bits, mask=kept)
    tl.store(row + 3, x0.to(tl.int32, bitcast=True), mask=kept)
    tl.store(row + 4, y0.to(tl.int32, bitcast=True), mask=kept)
    tl.store(row + 5, x1.to(tl.int32, bitcast=True), mask=kept)
    tl.store(row + 6, y1.to(tl.int32, bitcast=True), mask=kept)
    tl.store(counts_ptr + frame, tl.sum(kept.to(tl.int32), axis=0))


def select_detections_batch(
    probs: torch.Tensor,
    dets: torch.Tensor,
    frames: torch.Tensor,
    has_name: torch.Tensor,
    num_select: int,
    score_threshold: float,
    *,
    capacity: int | None = None,
) -> Selection:
    """Every frame's detections, as backends.postprocess.select_detections, in one launch.

    Args:
        probs: (B, Q, C) float32 class probabilities (`labels.sigmoid()`).
        dets: (B, Q, 4) float32 normalized cxcywh boxes.
        frames: (B, 2) int32 (height, width) of each frame, on the same device.
        has_name: (C,) int8, 1 where the class id has a name (backends.classes).
        num_select: top-k size, 1..MAX_NUM_SELECT.
        score_threshold: keep scores strictly above it.
        capacity: candidates ranked without the key search (a power of 2 >= the top-k size);
            default 1024 on a GPU, the smallest that fits the top-k in the interpreter.
    """
    if probs.dim() != 3 or probs.dtype != torch.float32:
        raise ValueError(f"probs must be (B, Q, C) float32, got {list(probs.shape)} {probs.dtype}")
    batch, num_queries, num_classes = probs.shape
    if dets.shape != (batch, num_queries, 4) or dets.dtype != torch.float32:
        raise ValueError(f"dets must be ({batch}, {num_queries}, 4) float32, got {list(dets.shape)} {dets.dtype}")
    if frames.shape != (batch, 2) or frames.dtype != torch.int32:
        raise ValueError(f"frames must be ({batch}, 2) int32, got {list(frames.shape)} {frames.dtype}")
    if has_name.shape != (num_classes,) or has_name.dtype != torch.int8:
        raise ValueError(f"has_name must be ({num_classes},) int8, got {list(has_name.shape)} {has_name.dtype}")
    if len({t.device for t in (probs, dets, frames, has_name)}) != 1:
        raise ValueError("probs, dets, frames and has_name must be on one device")
    if not 1 <= num_select <= MAX_NUM_SELECT:
        raise ValueError(f"num_select must be in 1..{MAX_NUM_SELECT} for the kernel, got {num_select}")
    n_flat = num_queries * num_classes
    if not 1 <= n_flat < 2**31:
        raise ValueError(f"Q x C = {n_flat} scores: must be in 1..2**31 - 1")
    k = min(num_select, n_flat)
    interpreted = probs.device.type == "cpu"
    if capacity is None:
        capacity = max(triton.next_power_of_2(k), 16 if interpreted else 1024)
    if capacity < k or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of 2 >= {k}, got {capacity}")
    device = probs.device
    rows = torch.empty((batch, k, ROW_FIELDS), dtype=torch.int32, device=device)
    counts = torch.empty((batch,), dtype=torch.int32, device=device)
    if batch == 0:
        return Selection(rows, counts)
    scratch = torch.empty((batch, capacity), dtype=torch.int64, device=device)
    thr_bits = int(np.float32(score_threshold).view(np.int32))
    _select_kernel[(batch,)](
        probs.contiguous(), dets.contiguous(), frames.contiguous(), has_name, scratch, rows, counts,
        n_flat, num_queries, num_classes, k, thr_bits,
        IDX_BITS=max(1, (n_flat - 1).bit_length()),
        CAP=capacity,
        CHUNK=capacity if interpreted else 8,  # 8: no register spills at CAP 1024 (sm_90)
        BLOCK=min(triton.next_power_of_2(n_flat), 8192 if interpreted else 2048),
        num_warps=8,
        enable_fp_fusion=False,  # the box arithmetic is the reference's, operation by operation
    )
    return Selection(rows, counts)
