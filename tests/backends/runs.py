"""Masks of every awkward shape, and their runs as backends.rle_kernel writes them: shared by the
host-side polygon tests and the strings kernel's tests."""

from __future__ import annotations

import numpy as np


def mask_runs(mask: np.ndarray) -> np.ndarray:
    """The column-major flat indices where the (H, W) mask changes value, as the RLE kernel
    writes them: COCO's run starts and (exclusive) ends, alternating."""
    flat = np.concatenate([[0], mask.T.reshape(-1).astype(np.int8), [0]])
    return np.flatnonzero(np.diff(flat))


def sample_masks(rng: np.random.Generator) -> list[np.ndarray]:
    """Empty, full, noise, a full-height band (runs across column joins), a disc, one corner
    pixel, at sizes from 1x1 to 131x97."""
    masks = []
    for height, width in [(1, 1), (1, 9), (9, 1), (7, 13), (64, 48), (131, 97)]:
        masks.append(np.zeros((height, width), bool))
        masks.append(np.ones((height, width), bool))
        masks.append(rng.random((height, width)) < 0.5)
        band = np.zeros((height, width), bool)
        band[:, width // 3 : width // 3 + 2] = True
        masks.append(band)
        yy, xx = np.mgrid[0:height, 0:width]
        masks.append((yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(height, width) / 2) ** 2)
        corner = np.zeros((height, width), bool)
        corner[-1, -1] = True
        masks.append(corner)
    return masks
