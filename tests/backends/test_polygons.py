from __future__ import annotations

import cv2
import numpy as np
import pytest

from backends.polygons import (
    foreground_bounds,
    largest_contour,
    largest_contour_reference,
)


def blob_masks():
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = rng.integers(1, 300, 2)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(0, 4)):
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(mask, center, int(rng.integers(1, 60)), 1, -1)
        yield mask.astype(bool)
    yield np.ones((50, 70), bool)  # touches every border
    yield np.ones((1, 1), bool)
    line = np.zeros((30, 40), bool)
    line[29, 5:] = True  # along the bottom border
    yield line
    yield rng.random((64, 64)) > 0.7  # many small components


@pytest.mark.parametrize("mask", list(blob_masks()), ids=lambda m: f"{m.shape}-{int(m.sum())}")
def test_tight_crop_matches_full_frame_reference(mask):
    np.testing.assert_array_equal(largest_contour(mask), largest_contour_reference(mask))


def test_picks_the_largest_component():
    mask = np.zeros((100, 100), np.uint8)
    cv2.rectangle(mask, (5, 5), (10, 10), 1, -1)
    cv2.rectangle(mask, (40, 40), (90, 80), 1, -1)
    polygon = largest_contour(mask.astype(bool))
    assert polygon[:, 0].min() == 40 and polygon[:, 1].max() == 80


def test_empty_mask_has_no_polygon():
    assert largest_contour(np.zeros((10, 10), bool)).shape == (0, 2)
    assert foreground_bounds(np.zeros((10, 10), bool)) is None
