"""backends.attention_kernel against torch's scaled_dot_product_attention.

CPU (CI): the kernel in Triton's interpreter on small shapes, with sequences that end inside a
block and the strided head views of one fused projection, plus the errors. GPU (skipped without
CUDA): the backbone's shapes in FP16 and the op inside a torch.compile'd graph.
"""

from __future__ import annotations

import pytest
import torch

from backends.attention_kernel import attention

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="the backbone shapes in FP16 need a GPU")
DEVICE = "cuda" if CUDA else "cpu"


def fused_heads(batch, heads, seq_len, head_dim, dtype, seed=0, device=DEVICE):
    """query, key and value as the backbone makes them: (B, H, S, D) views of one (B, S, 3*H*D)
    projection, strided, not contiguous."""
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, seq_len, 3 * heads * head_dim, generator=generator).to(device, dtype)
    return tuple(
        part.view(batch, seq_len, heads, head_dim).permute(0, 2, 1, 3) for part in qkv.chunk(3, dim=-1)
    )


def reference(query, key, value):
    return torch.nn.functional.scaled_dot_product_attention(query.float(), key.float(), value.float())


@pytest.mark.parametrize(
    ("shape", "dtype", "tolerance"),
    [
        ((2, 3, 70, 64), torch.float16, 2e-3),  # two query blocks, a key block cut short
        ((1, 2, 130, 32), torch.float16, 2e-3),  # three query blocks, three key steps
    ],
)
def test_matches_scaled_dot_product_attention(shape, dtype, tolerance):
    query, key, value = fused_heads(*shape, dtype)
    assert not query.is_contiguous()
    out = attention(query, key, value)
    assert out.shape == query.shape and out.dtype == dtype
    error = (out.float() - reference(query, key, value)).abs().max().item()
    assert error < tolerance


def test_heads_merge_without_a_copy():
    out = attention(*fused_heads(1, 2, 20, 16, torch.float16))
    assert out.permute(0, 2, 1, 3).is_contiguous()


def test_an_empty_batch_gives_an_empty_output():
    out = attention(*fused_heads(0, 2, 20, 16, torch.float16))
    assert out.shape == (0, 2, 20, 16)


def test_rows_do_not_leak_into_each_other():
    # A query row's output depends on its own row only: changing another row's query changes
    # nothing else (a masking bug at a block edge would).
    query, key, value = fused_heads(1, 1, 70, 16, torch.float16, seed=3)
    before = attention(query, key, value)
    query = query.clone()
    query[0, 0, 65] += 10.0
    after = attention(query, key, value)
    changed = (after - before).abs().amax(dim=(0, 1, 3)) > 0
    assert changed.nonzero().flatten().tolist() == [65]


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (lambda q, k, v: (q[0], k, v), "query must be a"),
        (lambda q, k, v: (q, k[:, :, :10], v), "one shape"),
        (lambda q, k, v: (q.float(), k.float(), v.float()), "dtype"),
        (lambda q, k, v: (q, k.bfloat16(), v), "dtype"),
        (lambda q, k, v: (q[..., :8], k[..., :8], v[..., :8]), "head dim must be one of"),
    ],
)
def test_bad_inputs_are_refused_by_name(tensors, message):
    q, k, v = fused_heads(1, 2, 20, 16, torch.float16)
    with pytest.raises(ValueError, match=message):
        attention(*tensors(q, k, v))


@needs_cuda
@pytest.mark.parametrize("shape", [(4, 6, 170, 64), (1, 6, 680, 64), (128, 6, 170, 64)])
def test_backbone_shapes_in_fp16(shape):
    # Nano's windowed layers (4 windows of 169 patches and a class token), its global layers
    # (680 tokens) and the windowed layers of a batch of 32.
    query, key, value = fused_heads(*shape, torch.float16)
    error = (attention(query, key, value).float() - reference(query, key, value)).abs().max().item()
    assert error < 2e-3


@needs_cuda
def test_compiled_graphs_keep_the_kernel():
    query, key, value = fused_heads(4, 6, 170, 64, torch.float16)

    def merged(q, k, v):
        return attention(q, k, v).permute(0, 2, 1, 3).flatten(2)

    compiled = torch.compile(merged, fullgraph=True)
    expected = merged(query, key, value)
    assert torch.equal(compiled(query, key, value), expected)
