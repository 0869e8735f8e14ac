"""Scaled dot-product self-attention for the compiled engine's short sequences, one Triton kernel.

The reference is torch.nn.functional.scaled_dot_product_attention (no mask, no dropout): the
same softmax(Q K^T * scale) V, computed blockwise with an online softmax in float32, as flash
attention does. Why a kernel of our own: in the engine's batch-1 graph on an H200, cuDNN's SDPA
took 10.8 us per backbone layer, and cuDNN's frontend puts a memset node before every call; the
two nodes left about 5 us of idle GPU around them, 16 times a frame. As CUDA-graph nodes on the
engine's batch-1 shapes this kernel takes 4.0-8.5 us against cuDNN's 7.6-12.8 (memset included) and
torch's flash kernel's 9.0-12.2, which splits small batches in two kernels (split-KV); inductor's
flex_attention template was slower still (benchmarks/results/h200/engine-attention.md, where
the block sizes below come from: within 1 % of the best of 72 configurations on every shape).

Registered as a torch.library triton_op (`rfdetr_triton::attention`), so torch.compile keeps it
inside its graph (fullgraph) and the engine's CUDA graph replays it as one kernel node.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)  # tl.dot tiles: a power of two, at least 16
# Half precision only: tl.dot on float32 would round through TF32 on the GPU, short of what
# scaled_dot_product_attention gives float32 callers.
_DTYPES = (torch.float16, torch.bfloat16)
_BLOCK_M = 64  # query rows per program
_BLOCK_N = 64  # key rows per step of the online softmax
_LOG2E = 1.4426950408889634


@triton.jit
def _attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr,
    q_sb, q_sh, q_sm, q_sd,
    k_sb, k_sh, k_sn, k_sd,
    v_sb, v_sh, v_sn, v_sd,
    o_sb, o_sh, o_sm, o_sd,
    heads, seq_len,
    QK_SCALE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One program: BLOCK_M query rows of one (batch, head); keys and values in BLOCK_N steps."""
    row_block = tl.program_id(0)
    batch_head = tl.program_id(1)
    b = batch_head // heads
    h = batch_head % heads
    rows = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    row_ok = rows < seq_len
    q = tl.load(
        q_ptr + b * q_sb + h * q_sh + rows[:, None] * q_sm + dims[None, :] * q_sd,
        mask=row_ok[:, None],
        other=0.0,
    )
    k_base = k_ptr + b * k_sb + h * k_sh
    v_base = v_ptr + b * v_sb + h * v_sh
    running_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    running_sum = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    for start in range(0, seq_len, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < seq_len
        k_t = tl.load(k_base + cols[None, :] * k_sn + dims[:, None] * k_sd, mask=col_ok[None, :], other=0.0)
        # Scores in log2 units (scale * log2 e folded in): exp2 is the hardware's exponential.
        # The scale is a constexpr: a float argument reaches the kernel as float64 from a
        # torch.compile'd graph and would promote the scores to it.
        scores = tl.dot(q, k_t) * QK_SCALE
        scores = tl.where(col_ok[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        probs = tl.math.exp2(scores - new_max[:, None])
        rescale = tl.math.exp2(running_max - new_max)
        running_sum = running_sum * rescale + tl.sum(probs, 1)
        v = tl.load(v_base + cols[:, None] * v_sn + dims[None, :] * v_sd, mask=col_ok[:, None], other=0.0)
        acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v)
        running_max = new_max
    acc = acc / running_sum[:, None]
    tl.store(
        out_ptr + b * o_sb + h * o_sh + rows[:, None] * o_sm + dims[None, :] * o_sd,
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None],
    )


def _check_inputs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            raise ValueError(f"{name} must be a (batch, heads, sequence, head dim) tensor")
    if not query.shape == key.shape == value.shape:
        raise ValueError(
            f"query, key and value must have one shape (self-attention), got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if query.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"head dim must be one of {HEAD_DIMS}, got {query.shape[-1]}")
    if query.dtype not in _DTYPES or not query.dtype == key.dtype == value.dtype:
        raise ValueError(
            f"query, key and value must share a dtype of {_DTYPES}, "
            f"got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if not query.device == key.device == value.device:
        raise ValueError(
            f"query, key and value must be on one device, "
            f"got {query.device}, {key.device}, {value.device}"
        )


@torch.library.triton_op("rfdetr_triton::attention", mutates_args=())
def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(query key^T / sqrt(head dim)) value, as scaled_dot_product_attention without mask
    or dropout. Inputs may be strided views (the heads of one fused projection).

    Args:
        query, key, value: (B, H, S, D) tensors of one shape, dtype (float16 or bfloat16)
            and device; D in HEAD_DIMS.

    Returns:
        (B, H, S, D) in the inputs' dtype, a view of (B, S, H, D) memory: permuted back to
        (B, S, H, D) it is contiguous, so merging the heads costs no copy.

    Raises:
        ValueError: shapes, head dim, dtypes or devices as above.
    """
    _check_inputs(query, key, value)
    batch, heads, seq_len, head_dim = query.shape
    out = query.new_empty(batch, seq_len, heads, head_dim).permute(0, 2, 1, 3)
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(seq_len, _BLOCK_M), batch * heads)
    torch.library.wrap_triton(_attention_kernel)[grid](
        query, key, value, out,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        heads, seq_len,
        QK_SCALE=_LOG2E / math.sqrt(head_dim), HEAD_DIM=head_dim, BLOCK_M=_BLOCK_M, BLOCK_N=_BLOCK_N,
    )  # fmt: skip
    return out
