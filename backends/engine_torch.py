"""The RF-DETR-Seg engine as rfdetr's own model in eager PyTorch, on CPU or GPU.

The torch engine on the CPU, the fp32 reference the compiled FP16 engine (backends.engine_compiled)
is checked against, and the model that engine compiles. It runs the forward that rfdetr's ONNX export traces,
so it keeps the ONNX file's contract (backends.contract): `input` [B, 3, R, R] -> `dets`,
`labels`, `masks`. tools.export_onnx writes the weights it exported beside the .onnx, so both
engines serve the same model, random weights included.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from backends.contract import DETS, LABELS, MASKS, MODEL_SIZES

# rfdetr imports torchvision, whose compiled ops a CPU-only torch lacks: the shim defines them.
from backends.torchvision_cpu import ensure_torchvision_importable

logger = logging.getLogger(__name__)


def model_class(size: str):
    """rfdetr's RFDETRSeg* class for a MODEL_SIZES key."""
    ensure_torchvision_importable()
    import rfdetr

    names = {
        "nano": "RFDETRSegNano",
        "small": "RFDETRSegSmall",
        "medium": "RFDETRSegMedium",
        "large": "RFDETRSegLarge",
        "xlarge": "RFDETRSegXLarge",
        "2xlarge": "RFDETRSeg2XLarge",
    }
    return getattr(rfdetr, names[size])


def _full_fp32() -> None:
    """fp32 means fp32: no TF32 in matmuls or cuDNN convolutions (parity with the CPU engine).

    Importing rfdetr sets torch.set_float32_matmul_precision("high") process-wide, which turns
    TF32 on for CUDA (and oneDNN) matmuls; this undoes it. It uses the legacy flags, as rfdetr
    and torch.backends.cudnn.flags() do: torch refuses to read flags set through a mix of them
    and the newer fp32_precision ones.
    """
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False


def _switch_to_export_forward(model: torch.nn.Module, resolution: int) -> None:
    """Puts rfdetr's LWDETR in the mode its ONNX export traces, as RFDETR.export() does.

    First DINOv2's position embeddings are frozen to R x R (prepare_export_graph), then every
    module's forward becomes its forward_export: a plain tensor in, the tuple
    (boxes, logits, masks) out, no NestedTensor padding masks, one query group.
    """
    from rfdetr.models.backbone.dinov2 import DinoV2

    for module in model.modules():
        if isinstance(module, DinoV2):
            module.shape = (resolution, resolution)
            module.export()
    model.export()


def check_engine_input(batch, resolution: int) -> None:
    """Raises ValueError naming the problem unless batch is a float32 (B, 3, R, R) tensor."""
    expected = f"float32 [B, 3, {resolution}, {resolution}]"
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor {expected}, got {type(batch).__name__}")
    if batch.dtype != torch.float32:
        raise ValueError(f"input must be {expected}, got dtype {batch.dtype}")
    if batch.ndim != 4 or batch.shape[0] < 1 or tuple(batch.shape[1:]) != (3, resolution, resolution):
        raise ValueError(f"input must be {expected}, got shape {list(batch.shape)}")


class TorchEngine:
    """rfdetr's RF-DETR-Seg model with the ONNX export's tensor contract.

    Attributes:
        resolution: R, the input side.
        num_queries: Q.
        num_classes: C, class logits per query (a fine-tuned checkpoint's n classes + 1).
        device: where the model runs and the outputs are.
    """

    def __init__(self, size: str, weights: str | Path | None, device: torch.device | str) -> None:
        """Builds the model.

        Args:
            size: a key of backends.contract.MODEL_SIZES ("nano" .. "2xlarge").
            weights: a checkpoint .pth in rfdetr's layout {"model": state_dict, "args": ...}
                (what `pretrain_weights=` loads, tools.export_onnx writes it), or None for
                seeded random weights.
            device: where to run, e.g. torch.device("cuda").

        Raises:
            ValueError: unknown size.
            FileNotFoundError: weights is not a file.
        """
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown size {size!r}; choose one of {sorted(MODEL_SIZES)}")
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"weights not found: {weights}")
        if weights is None:
            logger.warning(
                "NO WEIGHTS GIVEN: RF-DETR-Seg-%s has RANDOM weights; detections are meaningless",
                size,
            )
            torch.manual_seed(0)  # the same random model as tools.export_onnx's

        rfdetr_model = model_class(size)(pretrain_weights=str(weights) if weights else None)
        _full_fp32()  # after rfdetr's import, which turns TF32 on
        self.device = torch.device(device)
        self.resolution = int(rfdetr_model.model.resolution)
        model = rfdetr_model.model.model
        _switch_to_export_forward(model, self.resolution)
        self.model = model.eval().float().to(self.device)
        self.num_queries = int(model.num_queries)
        self.num_classes = int(model.class_embed.out_features)

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs the model on a normalized batch.

        Args:
            batch: (B, 3, R, R) float32, normalized RGB, on any device.

        Returns:
            On the engine's device: "dets" (B, Q, 4) normalized cxcywh, "labels" (B, Q, C)
            logits, "masks" (B, Q, R/4, R/4) logits.

        Raises:
            ValueError: batch is not a float32 (B, 3, R, R) tensor.
        """
        check_engine_input(batch, self.resolution)
        with torch.inference_mode():
            dets, labels, masks = self.model(batch.to(self.device))
        return {DETS: dets, LABELS: labels, MASKS: masks}
