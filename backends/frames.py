"""What a frame must be: a non-empty uint8 H x W x 3 BGR image.

Checked on shapes and dtype names only, so numpy arrays (clients) and torch tensors (the
preprocess, on any device) go through the same rule; no torch import here.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.errors import InvalidRequestError


class InvalidImageError(InvalidRequestError):
    """The frame cannot be preprocessed; the message names the problem."""


def check_frame(shape: Sequence[int], dtype: object) -> None:
    """Raises InvalidImageError unless (shape, dtype) is a non-empty uint8 HxWx3 frame.

    Args:
        shape: the frame's shape, (H, W, 3).
        dtype: a numpy or torch dtype (compared by name: "uint8" / "torch.uint8").
    """
    name = str(dtype).removeprefix("torch.")
    if name != "uint8":
        raise InvalidImageError(f"image must be uint8, got {name}")
    if len(shape) != 3 or shape[2] != 3:
        raise InvalidImageError(f"image must be HxWx3 (BGR), got shape {list(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidImageError(f"image is empty: {shape[0]}x{shape[1]} pixels")
