from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from backends.rle import decode_mask, encode_mask, to_coco_json


def masks_to_check():
    rng = np.random.default_rng(0)
    yield np.zeros((1, 1), bool)
    yield np.ones((1, 1), bool)
    yield np.zeros((17, 9), bool)
    yield np.ones((17, 9), bool)
    border = np.zeros((40, 60), bool)
    border[0, :] = border[:, -1] = True
    yield border
    yield rng.random((123, 77)) > 0.5
    blob = np.zeros((1080, 1920), bool)
    blob[100:900, 300:1700] = True
    yield blob


@pytest.mark.parametrize("mask", list(masks_to_check()), ids=lambda m: f"{m.shape}-{int(m.sum())}")
def test_counts_identical_to_pycocotools_and_round_trip(mask):
    counts = encode_mask(mask)
    expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    assert counts == expected
    np.testing.assert_array_equal(decode_mask(counts, *mask.shape), mask)


def test_counts_are_column_major():
    mask = np.zeros((2, 3), bool)
    mask[0, 1] = True  # column-major index 2
    uncompressed = mask_utils.frPyObjects({"size": [2, 3], "counts": [2, 1, 3]}, 2, 3)
    assert encode_mask(mask) == uncompressed["counts"]


def test_coco_json_form():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    record = to_coco_json(encode_mask(mask), 4, 5)
    assert record["size"] == [4, 5] and isinstance(record["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(record).astype(bool), mask)


def test_rejects_non_2d_mask():
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 1), bool))
