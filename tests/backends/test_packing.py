from __future__ import annotations

import numpy as np
import pytest

from backends.packing import pack, pack_bytes, unpack, unpack_bytes
from backends.results import EMPTY_POLYGON


def test_polygons_round_trip():
    polygons = [np.array([[1, 2], [3, 4]]), np.zeros((0, 2), np.int32), np.array([[5, 6]])]
    points, offsets = pack(polygons, EMPTY_POLYGON)
    assert points.dtype == np.int32 and points.shape == (3, 2) and offsets.tolist() == [0, 2, 2, 3]
    for a, b in zip(unpack(points, offsets), polygons):
        np.testing.assert_array_equal(a, b)


def test_nothing_packs_to_typed_empty_data():
    points, offsets = pack([], EMPTY_POLYGON)
    assert points.shape == (0, 2) and points.dtype == np.int32 and offsets.tolist() == [0]
    assert unpack(points, offsets) == []
    data, offsets = pack_bytes([])
    assert data.dtype == np.uint8 and data.shape == (0,) and unpack_bytes(data, offsets) == []


def test_strings_round_trip_including_empty_and_utf8():
    strings = [b"8o0c0\\OW1", b"", "gâteau".encode()]
    data, offsets = pack_bytes(strings)
    assert data.dtype == np.uint8 and offsets.dtype == np.int32
    assert unpack_bytes(data, offsets) == strings


@pytest.mark.parametrize("offsets", [[], [1, 2], [0, 3], [0, 2, 1, 2]])
def test_unpack_rejects_inconsistent_offsets(offsets):
    with pytest.raises(ValueError, match="offsets"):
        unpack(np.zeros((2, 2), np.int32), np.array(offsets, np.int32))
