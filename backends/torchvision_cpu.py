"""Makes PyPI's CUDA-linked torchvision importable beside the CPU build of torch.

PyPI has no CPU torchvision for torch 2.13. The CUDA wheel's compiled ops library fails to load
against the CPU torch, so `import torchvision` dies registering fake kernels for
`torchvision::nms`/`qnms`, whose schemas that library would have defined. Defining those two
schemas first lets torchvision import; rfdetr's export and PostProcess never call them. Where
the library loads (a CUDA host), it defines them itself and nothing is done here. For the
export tools and the parity tests only: nothing on the serving path imports torchvision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def _ops_library_loads(package_dir: Path) -> bool:
    compiled = sorted(package_dir.glob("_C*.so"))
    if not compiled:
        return False
    try:
        torch.ops.load_library(str(compiled[0]))
    except OSError:  # CUDA-linked library, CPU torch
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Defines the missing torchvision op schemas where needed (idempotent), then imports it."""
    global _library
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torchvision is not installed: pip install torchvision==0.28.0")
    if _library is None and not _ops_library_loads(Path(spec.submodule_search_locations[0])):
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _library.define(schema)
    import torchvision  # noqa: F401  (the import itself is the point)
