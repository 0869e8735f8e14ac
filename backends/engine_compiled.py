"""RF-DETR-Seg for GPUs without TensorRT: rfdetr's model in FP16, compiled by torch.compile
(inductor) and replayed as one CUDA graph per batch bucket.

Eager RF-DETR is launch-bound (about 570 kernels a frame: tools.md); a CUDA graph removes the
launches, and inductor fuses the small ops around the matrix products. Graphs replay fixed
shapes, so each bucket of backends.batch_buckets gets its own compiled forward, graph and static
input buffer; a batch is copied into the smallest bucket that holds it and the padding rows'
outputs are dropped (every frame is computed on its own: RF-DETR has no batch-coupled op at
inference). Inputs and outputs keep the engine contract's float32 (backends.contract).

Compiling costs about half a minute per bucket. torch.compile's cache artifacts
(torch.compiler.save_cache_artifacts, "Mega-Cache") written at build time beside the weights cut
a server's start to seconds per bucket; a cache from another torch or GPU just misses.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from backends.attention_kernel import HEAD_DIMS, attention
from backends.batch_buckets import bucket_for, chunks
from backends.contract import DETS, LABELS, MASKS
from backends.engine_torch import TorchEngine, check_engine_input

logger = logging.getLogger(__name__)

# Beside the weights in the engine's version folder: tools.build_repository writes it on a GPU host.
COMPILE_CACHE_FILE = "torch_compile_cache.bin"


def use_cudnn_depthwise_convs(model: torch.nn.Module) -> int:
    """Runs the mask head's depthwise convolutions as plain convolutions; returns how many.

    rfdetr's DepthwiseConvBlock wraps its 3x3 depthwise conv in an autograd Function that turns
    cuDNN off under a threading.Lock, a training workaround (cuDNN depthwise backward crashes on
    T4/P100, rfdetr #731). At inference there is no backward, and the workaround costs twice:
    ATen's native depthwise kernel plus layout copies took 33 % of a batch-32 forward on an H200,
    and the lock is a graph break for torch.compile. Same weights, same arithmetic up to
    summation order.
    """
    from rfdetr.models.heads.segmentation import DepthwiseConvBlock

    class InferenceDepthwiseConvBlock(DepthwiseConvBlock):
        def _depthwise_conv(self, x: torch.Tensor) -> torch.Tensor:
            return self.dwconv(x)

    blocks = [m for m in model.modules() if type(m) is DepthwiseConvBlock]
    for block in blocks:
        block.__class__ = InferenceDepthwiseConvBlock
    return len(blocks)


def use_matmul_patch_embeddings(model: torch.nn.Module) -> int:
    """Runs the backbone's patch embedding as one matrix product; returns how many it rewrote.

    The embedding is a convolution whose kernel equals its stride over 3 input channels: cuDNN
    has no fast kernel for 3 channels (38.6 us a batch-1 forward on an H200, 3.6 % of it). The
    patches do not overlap, so a reshape and a GEMM compute the same sums (up to summation
    order), and inductor fuses the reshape: batch-1 replay 1.157 -> 1.112 ms on the H200
    (benchmarks/results/h200/engine-batch1-variants.md).
    """
    from rfdetr.models.backbone.dinov2_with_windowed_attn import Dinov2WithRegistersPatchEmbeddings

    class MatmulPatchEmbeddings(Dinov2WithRegistersPatchEmbeddings):
        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            batch, channels, height, width = pixels.shape
            (ph, pw), rows, cols = self.patch_size, height // self.patch_size[0], width // self.patch_size[1]
            # As the convolution: a remainder narrower than a patch is left out.
            patches = pixels[:, :, : rows * ph, : cols * pw].reshape(batch, channels, rows, ph, cols, pw)
            patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, channels * ph * pw)
            weight = self.projection.weight.reshape(self.projection.out_channels, -1)
            return torch.addmm(self.projection.bias, patches.flatten(0, 1), weight.t()).unflatten(0, (batch, -1))

    embeddings = [m for m in model.modules() if type(m) is Dinov2WithRegistersPatchEmbeddings]
    for module in embeddings:
        module.__class__ = MatmulPatchEmbeddings
    return len(embeddings)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Self-attention at inference (no mask, no dropout). On the GPU, the Triton kernel
    of backends.attention_kernel: one graph node where cuDNN's SDPA took two and their idle time
    (about 10 us a layer at batch 1 on an H200). On the CPU, torch's SDPA (the same result up to
    summation order)."""
    if query.is_cuda:
        return attention(query, key, value)
    return torch.nn.functional.scaled_dot_product_attention(query, key, value)


def use_fused_qkv_projections(model: torch.nn.Module) -> int:
    """Runs each backbone attention's query, key and value projections as one matrix product;
    returns how many attentions it rewrote.

    DINOv2 projects its tokens three times, three Linear layers on one input. Inductor's freezing
    concatenates such weights (its addmm_patterns_init); without freezing they are graph inputs and
    each projection stays its own GEMM. Run on this graph, freezing's passes remove 27 GEMMs, 24 of
    them these (Nano's 12 layers x 2): most of the 33 kernels freezing saved a batch-1 forward on
    an H200 (294 -> 261; benchmarks/results/cpu/engine-parameter-only-work.md, where inductor's
    CPU code goes from 131 to 107 GEMM calls). This concatenates them once, after the model's
    .half() (a concatenation is exact in any dtype), and runs one GEMM and a split; the Linear
    layers keep their weights as views of the fused one, so nothing is stored twice. Same dot
    products: bit-identical outputs on the CPU.
    """
    from rfdetr.models.backbone.dinov2_with_windowed_attn import (
        Dinov2WithRegistersSdpaSelfAttention,
    )

    class FusedQKVSelfAttention(Dinov2WithRegistersSdpaSelfAttention):
        def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
            # Attention maps or training (dropout): the parent's forward, on the Linear layers
            # (views of qkv).
            if output_attentions or self.training:
                return super().forward(hidden_states, output_attentions)
            qkv = torch.nn.functional.linear(hidden_states, self.qkv_weight, self.qkv_bias)
            query, key, value = (self.transpose_for_scores(part) for part in qkv.chunk(3, dim=-1))
            context = _attend(query, key, value)
            return context.permute(0, 2, 1, 3).flatten(2), None

    attentions = [m for m in model.modules() if type(m) is Dinov2WithRegistersSdpaSelfAttention]
    for layer in attentions:
        linears = (layer.query, layer.key, layer.value)
        for name in ("weight", "bias"):
            parts = [getattr(linear, name) for linear in linears]
            if parts[0] is None:  # a config without qkv_bias
                layer.register_buffer(f"qkv_{name}", None)
                continue
            fused = torch.cat([part.detach() for part in parts])
            layer.register_buffer(f"qkv_{name}", fused)
            for linear, view in zip(linears, fused.chunk(3)):
                setattr(linear, name, torch.nn.Parameter(view, requires_grad=False))
        layer.__class__ = FusedQKVSelfAttention
    return len(attentions)


def use_kernel_decoder_self_attention(model: torch.nn.Module) -> int:
    """Runs each decoder layer's query self-attention on _attend, with its query and key
    projections as one matrix product; returns how many attentions it rewrote.

    rfdetr's decoder calls nn.MultiheadAttention(q, k, v) with q = k (queries plus positions) and
    v the queries alone, so torch projects them in three GEMMs and runs cuDNN's SDPA: a memset
    and a kernel, about 8.5 us as graph nodes at batch 1 on an H200 against 4.5 us for the Triton
    kernel (engine-attention.md). Here q and k take one GEMM on the first two thirds of the
    packed in-projection (a view: nothing is copied) and v the last third. Masks, attention
    weights or a query that is not the key go to nn.MultiheadAttention's own forward.
    """

    class KernelSelfAttention(torch.nn.MultiheadAttention):
        def forward(
            self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, **kwargs
        ):
            if (
                query is not key
                or key_padding_mask is not None
                or attn_mask is not None
                or need_weights
                or kwargs
                or self.training
            ):
                return super().forward(
                    query, key, value, key_padding_mask, need_weights, attn_mask, **kwargs
                )
            width = self.embed_dim
            query_key = torch.nn.functional.linear(
                query, self.in_proj_weight[: 2 * width], self.in_proj_bias[: 2 * width]
            )
            value = torch.nn.functional.linear(
                value, self.in_proj_weight[2 * width :], self.in_proj_bias[2 * width :]
            )
            batch, length = value.shape[:2]
            query, key, value = (
                part.view(batch, length, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
                for part in (*query_key.chunk(2, dim=-1), value)
            )
            context = _attend(query, key, value).permute(0, 2, 1, 3).flatten(2)
            return self.out_proj(context), None

    attentions = [
        m
        for m in model.modules()
        if type(m) is torch.nn.MultiheadAttention
        and m.batch_first
        and m._qkv_same_embed_dim
        and m.in_proj_bias is not None
        and m.bias_k is None  # no learned key/value rows or zero row appended to the sequence
        and not m.add_zero_attn
        and m.head_dim in HEAD_DIMS
    ]
    for layer in attentions:
        layer.__class__ = KernelSelfAttention
    return len(attentions)


def use_channels_last_conv_weights(model: torch.nn.Module) -> int:
    """Stores the weights of the convolutions the forward runs channels-last; returns how many
    it converted.

    Inductor runs this graph's convolutions channels-last (its layout optimization is on for it)
    and, without freezing, copies each weight that is not channels-last into that layout inside
    every forward (torch/_inductor/kernel/conv.py: "maybe we can convert weights to channels last
    just once"): for Nano the projector's six 3x3 convolutions, six copies a forward (gone from
    inductor's CPU code after this; their GPU kernels are yet to be counted).
    Freezing converts them once (convert_conv_weights_to_channels_last); this does it at build
    time. Same values, same convolution. The patch embedding's weight is left alone:
    use_matmul_patch_embeddings reads it as a matrix.
    """
    from rfdetr.models.backbone.dinov2_with_windowed_attn import Dinov2WithRegistersPatchEmbeddings

    patch_embeddings = {
        id(m.projection) for m in model.modules() if isinstance(m, Dinov2WithRegistersPatchEmbeddings)
    }
    convs = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
        and id(m) not in patch_embeddings
        and not m.weight.is_contiguous(memory_format=torch.channels_last)
    ]
    for conv in convs:
        conv.to(memory_format=torch.channels_last)
    return len(convs)


class _BucketGraph:
    """One bucket: a static input buffer and the CUDA graph of the compiled forward on it."""

    def __init__(self, forward, rows: int, resolution: int, dtype: torch.dtype, device, pool) -> None:
        self.input = torch.zeros(rows, 3, resolution, resolution, dtype=dtype, device=device)
        started = time.perf_counter()
        # The first calls compile (or load from the cache) and tune; capture needs them done,
        # on a side stream as torch.cuda.graph's documentation asks.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                forward(self.input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a global capture breaks CUDA calls of the server's other threads
        # (roboflow/inference PR #2866, anchors.md).
        with (
            torch.inference_mode(),
            torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"),
        ):
            self.outputs = forward(self.input)
        self.prepare_s = time.perf_counter() - started

    def run(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs for batch (at most the bucket's rows), as new float32 tensors."""
        count = batch.shape[0]
        self.input[:count].copy_(batch)
        self.graph.replay()
        # .float() copies out of the graph's static outputs, which the next replay overwrites.
        return {name: out[:count].float() for name, out in zip((DETS, LABELS, MASKS), self.outputs)}


class CompiledEngine:
    """RF-DETR-Seg in FP16 as compiled CUDA graphs, one per batch bucket.

    Attributes:
        resolution, num_queries, num_classes, device: as TorchEngine's.
        buckets: the batch sizes with a graph.
        prepare_s: {bucket: seconds spent compiling and capturing it}.
    """

    def __init__(
        self,
        size: str,
        weights: str | Path | None,
        device: torch.device | str,
        buckets: tuple[int, ...],
        compile_cache: Path | None = None,
    ) -> None:
        """Builds, compiles and captures every bucket (minutes cold, seconds from a cache).

        Args:
            size, weights: as TorchEngine's.
            device: a CUDA device.
            buckets: the batch sizes to capture (backends.batch_buckets.bucket_sizes of the
                model's max batch size); larger batches run in chunks of the largest.
            compile_cache: torch.compile cache artifacts to load first, if the file exists
                (save_compile_cache writes it).

        Raises:
            ValueError: device is not CUDA, no buckets or a bucket < 1, or a bad size.
            FileNotFoundError: weights is not a file.
        """
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the compiled engine needs a CUDA device, got {self.device}")
        if not buckets or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in buckets):
            raise ValueError(f"buckets must be batch sizes >= 1, got {buckets!r}")
        self.buckets = tuple(sorted(set(buckets)))
        eager = TorchEngine(size, weights, self.device)
        self.resolution, self.num_queries, self.num_classes = (
            eager.resolution,
            eager.num_queries,
            eager.num_classes,
        )
        if compile_cache is not None and compile_cache.is_file():
            torch.compiler.load_cache_artifacts(compile_cache.read_bytes())
            logger.info("loaded torch.compile cache %s", compile_cache)
        model = eager.model.half().eval()
        use_cudnn_depthwise_convs(model)
        use_matmul_patch_embeddings(model)
        use_fused_qkv_projections(model)
        use_kernel_decoder_self_attention(model)
        use_channels_last_conv_weights(model)
        # dynamic=False: one static graph per bucket (sizes of 1 are specialised anyway, and a
        # dynamic batch guard fails past 15 rows). fullgraph: a graph break would leave eager
        # code, and its CPU copies, inside the captured graph. combo_kernels: inductor merges
        # independent small kernels side by side, 268 -> 257 graph nodes at batch 1 (0.884 ->
        # 0.870 ms on an H200, batch 32 unchanged: engine-attention.md).
        forward = torch.compile(
            model, dynamic=False, fullgraph=True, options={"combo_kernels": True}
        )
        # Dynamo counts compiles per code object, and every engine's forward is the same rfdetr
        # code: without room for this engine's buckets, a second engine in one process (Small
        # after Nano in a benchmark) hits the recompile limit (8) and, with fullgraph, fails.
        torch._dynamo.config.recompile_limit += len(self.buckets)
        # A CUDA graph holds raw pointers, not tensors: the weights its kernels read must outlive
        # it. Nothing else keeps the model (inductor takes the parameters as inputs at call
        # time), and freed weights recycled by later allocations gave an illegal memory access
        # (test_the_graphs_keep_the_weights_they_read).
        self._model = model
        pool = torch.cuda.graph_pool_handle()
        # Largest first: the smaller graphs reuse its intermediate blocks in the shared pool.
        self._graphs = {
            rows: _BucketGraph(forward, rows, self.resolution, torch.float16, self.device, pool)
            for rows in sorted(self.buckets, reverse=True)
        }
        self.prepare_s = {rows: round(graph.prepare_s, 1) for rows, graph in sorted(self._graphs.items())}

    @staticmethod
    def save_compile_cache(path: Path) -> int:
        """Writes this process's torch.compile cache artifacts to path; returns their bytes."""
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is None:
            raise RuntimeError("torch.compile recorded no cache artifacts (was anything compiled?)")
        blob, _ = artifacts
        path.write_bytes(blob)
        return len(blob)

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs a normalized float32 (B, 3, R, R) batch; outputs as TorchEngine's, float32.

        Raises:
            ValueError: batch is not a float32 (B, 3, R, R) tensor.
        """
        check_engine_input(batch, self.resolution)
        batch = batch.to(self.device)
        parts = []
        for start, stop in chunks(batch.shape[0], max(self.buckets)):
            rows = batch[start:stop]
            parts.append(self._graphs[bucket_for(rows.shape[0], self.buckets)].run(rows))
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


if __name__ == "__main__":
    # python -m backends.engine_compiled SIZE WEIGHTS BATCH: compiles one bucket into this host's
    # inductor cache (tools.build_repository runs one per bucket, in parallel).
    import sys

    CompiledEngine(sys.argv[1], sys.argv[2], "cuda", (int(sys.argv[3]),))
