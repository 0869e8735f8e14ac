"""backends.engine_compiled: RF-DETR-Seg in FP16, torch.compile'd, one CUDA graph per bucket.

CPU (CI): the model surgeries change no output (or only summation order), and the engine refuses
what it cannot serve. GPU (skipped without CUDA): FP16 graphs against eager fp32 after the reference
postprocess (every detection matched, mask IoU >= 0.99), and bucket padding and chunking that
change no frame's result.
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

from backends import engine_compiled
from backends.classes import ClassTable
from backends.engine_compiled import (
    CompiledEngine,
    use_channels_last_conv_weights,
    use_cudnn_depthwise_convs,
    use_fused_qkv_projections,
    use_kernel_decoder_self_attention,
    use_matmul_patch_embeddings,
)
from backends.engine_torch import TorchEngine
from backends.postprocess_settings import PostprocessSettings
from backends.preprocess import preprocess_batch
from tests.fp16_parity import (
    assert_no_error_beyond_fp16,
    eager_fp16_against_fp32,
    engine_outputs,
)
from tests.fp16_parity import fp16_comparison as compare_outputs
from tests.integration.test_targets import frames
from tools.compare_results import Comparison
from tools.export_onnx import RANDOM_WEIGHTS_THRESHOLD

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="the compiled engine replays CUDA graphs: needs a GPU"
)


def outputs_around(nano_export, rewrite, seed: int):
    """Nano's CPU outputs on one random frame before and after `rewrite` of its model, with the
    engine and the count the rewrite returned."""
    engine = TorchEngine("nano", nano_export.weights, "cpu")
    batch = torch.randn(1, 3, 312, 312, generator=torch.Generator().manual_seed(seed))
    before = engine(batch)
    count = rewrite(engine.model)
    return engine, before, count, engine(batch)


def test_cudnn_depthwise_rewrite_changes_no_output(nano_export):
    engine, before, count, after = outputs_around(nano_export, use_cudnn_depthwise_convs, seed=3)
    assert count > 0
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert use_cudnn_depthwise_convs(engine.model) == 0  # already rewritten: nothing left


def test_matmul_patch_embedding_matches_the_convolution(nano_export):
    engine = TorchEngine("nano", nano_export.weights, "cpu")
    # 316: not a multiple of the patch, so the remainder the convolution leaves out is tested too.
    pixels = torch.randn(2, 3, 316, 312, generator=torch.Generator().manual_seed(4))
    (embedding,) = [
        m for m in engine.model.modules() if hasattr(m, "projection") and hasattr(m, "patch_size")
    ]
    before = embedding(pixels)
    assert use_matmul_patch_embeddings(engine.model) == 1
    after = embedding(pixels)
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert use_matmul_patch_embeddings(engine.model) == 0  # already rewritten: nothing left


def test_fused_qkv_projections_change_no_output(nano_export):
    engine = TorchEngine("nano", nano_export.weights, "cpu")
    batch = torch.randn(1, 3, 312, 312, generator=torch.Generator().manual_seed(5))
    before = engine(batch)
    attention = next(m for m in engine.model.modules() if hasattr(m, "query") and hasattr(m, "key"))
    weights = [linear.weight.clone() for linear in (attention.query, attention.key, attention.value)]
    assert use_fused_qkv_projections(engine.model) == 12  # Nano's backbone layers
    # One matrix, exactly the three (so FP16 weights stay the model's own), and no second copy.
    assert torch.equal(attention.qkv_weight, torch.cat(weights))
    assert attention.value.weight.data_ptr() == attention.qkv_weight[-len(weights[2]) :].data_ptr()
    after = engine(batch)
    for name in before:
        # The same dot products: bit-identical on this CPU (a GPU's GEMM may block them otherwise).
        assert torch.equal(before[name], after[name]), name
    assert use_fused_qkv_projections(engine.model) == 0  # already rewritten: nothing left


def test_decoder_self_attention_rewrite_changes_no_output(nano_export, monkeypatch):
    calls = []
    attend = engine_compiled._attend
    monkeypatch.setattr(engine_compiled, "_attend", lambda *qkv: calls.append(1) or attend(*qkv))
    engine, before, count, after = outputs_around(nano_export, use_kernel_decoder_self_attention, seed=8)
    assert count == 4  # Nano's decoder layers
    assert len(calls) == 4  # the forward after the rewrite took the rewritten path, layer by layer
    for name in before:
        # One GEMM for the query and key projections instead of two: summation order only.
        torch.testing.assert_close(after[name], before[name], rtol=1e-4, atol=1e-4, msg=name)
    assert use_kernel_decoder_self_attention(engine.model) == 0  # already rewritten: nothing left


def test_decoder_attention_rewrite_leaves_what_it_cannot_run():
    kept = [
        torch.nn.MultiheadAttention(32, 2),  # sequence first
        torch.nn.MultiheadAttention(32, 2, batch_first=True, bias=False),
        torch.nn.MultiheadAttention(32, 2, batch_first=True, add_bias_kv=True),
        torch.nn.MultiheadAttention(32, 2, batch_first=True, add_zero_attn=True),
        torch.nn.MultiheadAttention(32, 2, batch_first=True, kdim=16, vdim=16),
        torch.nn.MultiheadAttention(24, 2, batch_first=True),  # head dim 12: no kernel tile
    ]
    assert use_kernel_decoder_self_attention(torch.nn.ModuleList(kept)) == 0
    assert all(type(m) is torch.nn.MultiheadAttention for m in kept)


def test_rewritten_attentions_train_as_torchs(nano_export):
    engine = TorchEngine("nano", nano_export.weights, "cpu")
    use_fused_qkv_projections(engine.model)
    use_kernel_decoder_self_attention(engine.model)
    backbone = next(m for m in engine.model.modules() if hasattr(m, "qkv_weight"))
    decoder = next(m for m in engine.model.modules() if isinstance(m, torch.nn.MultiheadAttention))
    tokens = torch.randn(2, 10, backbone.qkv_weight.shape[1])
    queries = torch.randn(2, 10, decoder.embed_dim)
    # In training both take their parent's forward, dropout included: with one seed, the same
    # dropped values as the parent class on the same module (the inference path has no dropout).
    backbone.train(), decoder.train()
    backbone.attention_probs_dropout_prob = decoder.dropout = 0.5

    def seeded(forward, *args, **kwargs):
        torch.manual_seed(10)
        return forward(*args, **kwargs)[0]

    parent = type(backbone).__mro__[1].forward
    torch.testing.assert_close(seeded(backbone, tokens), seeded(parent, backbone, tokens))
    torch.testing.assert_close(
        seeded(decoder, queries, queries, queries, need_weights=False),
        seeded(torch.nn.MultiheadAttention.forward, decoder, queries, queries, queries, need_weights=False),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda mha, q, v: mha(q, q, v, attn_mask=torch.zeros(5, 5), need_weights=False),
        lambda mha, q, v: mha(
            q, q, v, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool), need_weights=False
        ),
        lambda mha, q, v: mha(q, q, v),  # attention weights asked for
        lambda mha, q, v: mha(q, q.clone(), v, need_weights=False),  # the key is not the query
    ],
)
def test_rewritten_decoder_attention_keeps_torchs_forward_for_other_calls(call):
    torch.manual_seed(9)
    original = torch.nn.MultiheadAttention(32, 2, batch_first=True).eval()
    rewritten = torch.nn.MultiheadAttention(32, 2, batch_first=True).eval()
    rewritten.load_state_dict(original.state_dict())
    assert use_kernel_decoder_self_attention(rewritten) == 1
    query, value = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    expected, got = call(original, query, value), call(rewritten, query, value)
    for a, b in zip(expected, got):
        assert (a is None and b is None) or torch.equal(a, b)


def test_channels_last_conv_weights_change_no_output(nano_export):
    engine, before, count, after = outputs_around(nano_export, use_channels_last_conv_weights, seed=6)
    assert count == 6  # the projector's 3x3 convolutions
    for name in before:
        # Eager CPU convolutions follow the weight into channels-last, a different summation order
        # (measured: 3e-6 on labels, 5e-5 on mask logits); inductor already ran them channels-last.
        torch.testing.assert_close(after[name], before[name], rtol=1e-4, atol=1e-4, msg=name)
    # The patch embedding is left alone: use_matmul_patch_embeddings reads its weight as a matrix.
    assert use_matmul_patch_embeddings(engine.model) == 1
    assert use_channels_last_conv_weights(engine.model) == 0  # already converted: nothing left

def test_refuses_a_cpu_device_and_bad_buckets(nano_export):
    with pytest.raises(ValueError, match="needs a CUDA device, got cpu"):
        CompiledEngine("nano", nano_export.weights, "cpu", (1, 2))
    if CUDA:
        with pytest.raises(ValueError, match="buckets must be batch sizes >= 1"):
            CompiledEngine("nano", nano_export.weights, "cuda", (0, 2))


@pytest.fixture(scope="module")
def compiled(nano_export) -> CompiledEngine:
    return CompiledEngine("nano", nano_export.weights, "cuda", (1, 2, 4))


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """The integration tests' four frames (1080p to 1x1), preprocessed on the GPU."""
    return preprocess_batch([torch.from_numpy(f) for f in frames()], 312, torch.device("cuda"))


@pytest.fixture(scope="module")
def settings(nano_export) -> PostprocessSettings:
    return PostprocessSettings(100, RANDOM_WEIGHTS_THRESHOLD, ClassTable.load(nano_export.classes))


def fp16_comparison(expected: dict, served: dict, settings: PostprocessSettings) -> Comparison:
    """Engine outputs of the integration tests' frames, compared after the reference postprocess."""
    sizes = [f.shape[:2] for f in frames()][: len(expected["dets"])]
    return compare_outputs(expected, served, sizes, settings)


@needs_cuda
def test_fp16_graphs_add_no_error_beyond_fp16_itself(nano_export, compiled, batch, settings):
    """Random weights put every score within about 0.02 of the 0.05 threshold, and FP16 flips
    near-tied two-stage proposals, so eager FP16 itself misses the issue's absolute bar against
    fp32 here (H200: 4 unexplained, min mask IoU 0.939). The compiled graphs must stay within
    what FP16 alone does; the absolute bar runs on a trained checkpoint (next test)."""
    fp32 = engine_outputs(TorchEngine("nano", nano_export.weights, "cuda").model, batch)
    got = compiled(batch)
    assert {n: (t.dtype, tuple(t.shape)) for n, t in got.items()} == {
        n: (torch.float32, tuple(t.shape)) for n, t in fp32.items()
    }
    fp16_alone = eager_fp16_against_fp32(nano_export.weights, batch, [f.shape[:2] for f in frames()], settings)
    print("compiled FP16 vs eager fp32:", end=" ")
    assert_no_error_beyond_fp16(fp16_comparison(fp32, got, settings), fp16_alone, min_matched=10)


CHECKPOINT = os.environ.get("RFDETR_SEG_NANO_CHECKPOINT")


@needs_cuda
@pytest.mark.skipif(
    not CHECKPOINT, reason="set RFDETR_SEG_NANO_CHECKPOINT to a trained RF-DETR-Seg-Nano .pth"
)
def test_fp16_graphs_detect_what_eager_fp32_detects_on_a_trained_checkpoint(batch, nano_export):
    """The issue's bar: every detection matched and mask IoU >= 0.99, on trained weights."""
    fp32 = TorchEngine("nano", CHECKPOINT, "cuda")
    settings = PostprocessSettings(fp32.num_queries, 0.5, ClassTable.load(nano_export.classes))
    engine = CompiledEngine("nano", CHECKPOINT, "cuda", (4,))
    report = fp16_comparison(fp32(batch), engine(batch), settings)
    assert not report.unexplained and report.min_mask_iou >= 0.99, report


@needs_cuda
def test_engines_of_two_sizes_compile_in_one_process(compiled, monkeypatch):
    """Every engine compiles the same rfdetr forward: dynamo's per-code recompile limit must leave
    room for each engine's buckets (seen: Medium after Small in one bench_engine run failed)."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", len(compiled.buckets))  # full now
    small = CompiledEngine("small", None, "cuda", (1, 2))
    frame = torch.randn(1, 3, small.resolution, small.resolution, device="cuda")
    assert small(frame)["masks"].shape[0] == 1
    assert (
        compiled(frame[:, :, : compiled.resolution, : compiled.resolution])["masks"].shape[0] == 1
    )  # the first engine's graphs still replay


@needs_cuda
def test_the_graphs_keep_the_weights_they_read(compiled):
    """Freed memory recycled after the build (an empty cache, then new tensors over it) must not
    reach the graphs: they read the model's weights by address."""
    frame = torch.randn(1, 3, compiled.resolution, compiled.resolution, device="cuda")
    before = compiled(frame)
    gc.collect()
    torch.cuda.empty_cache()
    churn = [
        torch.full((1 << bits,), 6e4, dtype=torch.float16, device="cuda")
        for bits in range(10, 24)
        for _ in range(4)
    ]
    after = compiled(frame)
    del churn
    for name in before:
        assert torch.equal(before[name], after[name]), name


@needs_cuda
def test_padding_and_chunking_change_no_frame(compiled, batch, settings):
    full = compiled(batch)  # bucket 4, four frames
    compiled(batch.flip(0))  # leaves the first frame in the fourth row
    three = compiled(batch[:3])  # bucket 4, its padding row now holding the first frame
    six = compiled(torch.cat([batch, batch[:2]]))  # chunks of 4 and 2
    for name in full:
        # The same graph on the same rows: identical, whatever the other rows hold.
        assert torch.equal(three[name], full[name][:3]), name
        assert torch.equal(six[name][:4], full[name]), name
        assert torch.equal(six[name][4:], compiled(batch[:2])[name]), name
    # Another bucket is another graph, its kernels tuned for its shapes: FP16 rounding differs.
    # Every detection must still match, but not every mask: with random weights the mask logits
    # sit near 0 (H200: a mask IoU of 0.48 between buckets 1 and 4, every box and score equal
    # within 0.004); the mask bar runs on a trained checkpoint (the test above).
    alone = [compiled(batch[i : i + 1]) for i in range(3)]  # bucket 1
    one_by_one = {name: torch.cat([a[name] for a in alone]) for name in three}
    report = fp16_comparison(one_by_one, three, settings)
    assert report.matched >= 5 and not report.unexplained, report
