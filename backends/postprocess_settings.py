"""The postprocess's settings, which always travel together: top-k size, score threshold, class
table, polygons on or off. Checked on construction, so the builder, the demo and the models
refuse nonsense with one message. Torch-free: the reference and the kernels both import it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from backends.classes import ClassTable


@dataclass(frozen=True)
class PostprocessSettings:
    """The knobs that always travel together; refused here when they make no sense.

    Args:
        num_select: how many (query, class) pairs the top-k keeps (rfdetr's num_select).
        score_threshold: keep detections scoring strictly above it, in [0, 1].
        classes: class id -> name table; ids without a name are dropped.
        polygons: trace each mask's largest contour; without, every polygon is empty (a
            deployment whose clients read masks only skips the host's costliest step).
    """

    num_select: int
    score_threshold: float
    classes: ClassTable
    polygons: bool = True

    def __post_init__(self) -> None:
        check_score_threshold(self.score_threshold)
        if isinstance(self.num_select, bool) or not isinstance(self.num_select, int) or self.num_select < 1:
            raise ValueError(f"num_select must be an integer >= 1, got {self.num_select!r}")


def check_score_threshold(value: float) -> None:
    """Raises ValueError unless value is a number in [0, 1] (NaN is not)."""
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"score threshold must be a number in [0, 1], got {value!r}")
