"""Makes PyPI's CUDA-linked torchvision importable beside the CPU build of torch.

PyPI has no CPU torchvision for torch 2.13. The CUDA wheel's compiled ops library fails to load
against the CPU torch, so `import torchvision` dies registering fake kernels for
`torchvision::nms`/`qnms`, whose schemas that library would have defined. Defining those two
schemas first lets torchvision import; rfdetr's export and PostProcess never call them. This is
for the export tools and the parity tests only: nothing on the serving path imports torchvision.
"""

from __future__ import annotations

import importlib.util

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Defines the missing torchvision op schemas (idempotent), then imports torchvision."""
    global _library
    if importlib.util.find_spec("torchvision") is None:
        raise ModuleNotFoundError("torchvision is not installed: pip install torchvision==0.28.0")
    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if missing and _library is None:
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _library.define(_SCHEMAS[name])
    import torchvision  # noqa: F401  (the import itself is the point)
