"""The postprocess's settings, which always travel together: top-k size, score threshold, class
table, polygons on or off. Checked on construction, so the builder, the demo and the models
refuse nonsense with one message. Torch-free: the reference and the kernels both import it."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
            deployment whose clients read masks only skips the host's costliest step). The
            deployment's default: a request may choose otherwise (frame_polygons).
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


def frame_polygons(settings: PostprocessSettings, polygons: Sequence[bool] | None, batch: int) -> list[bool]:
    """Which frames of a batch get polygons: `polygons`, one choice per frame (each request's,
    frames of many requests mixed in one batch), or settings.polygons for every frame when None.

    Raises:
        ValueError: `polygons` does not hold one bool per frame.
    """
    if polygons is None:
        return [settings.polygons] * batch
    choices = list(polygons)
    if len(choices) != batch or not all(isinstance(choice, bool) for choice in choices):
        raise ValueError(f"polygons must be one bool per frame ({batch}), got {choices!r}")
    return choices
