"""backends.results: SegmentationResult <-> the ensemble's output tensors, both directions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from backends import contract
from backends.results import EMPTY_POLYGON, SegmentationResult, decode_result, encode_result

NUMPY_DTYPES = {"FP32": np.float32, "INT32": np.int32, "UINT8": np.uint8}


def several() -> SegmentationResult:
    """Three detections: two with empty polygons (one of them first), non-ASCII names."""
    return SegmentationResult(
        image_size=(48, 64),
        boxes=np.array([[1, 2, 10, 20], [0, 0, 63, 47], [5.5, 6.25, 7, 8]], np.float32),
        scores=np.array([0.93, 0.5, 0.0625], np.float32),
        class_ids=np.array([1, 90, 0], np.int32),
        class_names=["person", "crème brûlée", "東京タワー"],
        rle_counts=[b"P11`0", b"", b"0\\d1"],
        polygons=[
            EMPTY_POLYGON,
            np.array([[0, 0], [63, 0], [63, 47], [0, 47]], np.int32),
            np.zeros((0, 2), np.int32),
        ],
    )


def assert_same(decoded: SegmentationResult, expected: SegmentationResult) -> None:
    assert decoded.image_size == expected.image_size
    assert all(isinstance(v, int) for v in decoded.image_size)
    assert decoded.boxes.dtype == np.float32 and decoded.boxes.shape == (len(expected), 4)
    np.testing.assert_array_equal(decoded.boxes, expected.boxes)
    assert decoded.scores.dtype == np.float32
    np.testing.assert_array_equal(decoded.scores, expected.scores)
    assert decoded.class_ids.dtype == np.int32
    assert decoded.class_ids.tolist() == expected.class_ids.tolist()
    assert decoded.class_names == expected.class_names
    assert decoded.rle_counts == expected.rle_counts
    assert all(isinstance(counts, bytes) for counts in decoded.rle_counts)
    assert len(decoded.polygons) == len(expected.polygons)
    for ours, theirs in zip(decoded.polygons, expected.polygons, strict=True):
        assert ours.shape == (len(theirs), 2)
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "result", [SegmentationResult(image_size=(3, 5)), several()], ids=["empty", "several"]
)
def test_encoded_outputs_match_the_contract(result):
    outputs = encode_result(result)
    assert list(outputs) == [spec.name for spec in contract.RESULT_OUTPUTS]
    n = len(result)
    for spec in contract.RESULT_OUTPUTS:
        array = outputs[spec.name]
        assert array.dtype == NUMPY_DTYPES[spec.dtype], spec.name
        assert len(array.shape) == len(spec.dims), spec.name
        assert all(d == -1 or d == s for d, s in zip(spec.dims, array.shape, strict=True))
    assert outputs[contract.SCORES].shape == (n,)
    assert outputs[contract.BOXES].shape == (n, 4)
    for offsets in (
        contract.CLASS_NAME_OFFSETS,
        contract.RLE_OFFSETS,
        contract.POLYGON_OFFSETS,
    ):
        assert outputs[offsets].shape == (n + 1,) and outputs[offsets][0] == 0
    assert outputs[contract.IMAGE_SIZE].tolist() == list(result.image_size)


def test_names_travel_as_utf8():
    outputs = encode_result(several())
    names, offsets = outputs[contract.CLASS_NAMES], outputs[contract.CLASS_NAME_OFFSETS]
    assert names[offsets[1] : offsets[2]].tobytes() == "crème brûlée".encode()
    assert len("東京タワー".encode()) == offsets[3] - offsets[2] > len("東京タワー")


def test_empty_result_round_trips():
    decoded = decode_result(encode_result(SegmentationResult(image_size=(3, 5))).get)
    assert len(decoded) == 0
    assert decoded.polygons == [] and decoded.class_names == [] and decoded.rle_counts == []
    assert_same(decoded, SegmentationResult(image_size=(3, 5)))


def test_several_detections_round_trip_with_empty_polygons_and_utf8_names():
    expected = several()
    assert_same(decode_result(encode_result(expected).get), expected)


@pytest.mark.parametrize("result", [SegmentationResult(image_size=(3, 5)), several()])
def test_a_leading_batch_axis_of_one_is_accepted(result):
    # As the ensemble serves them (contract.ENSEMBLE_OUTPUTS): every output under a leading 1.
    served = {name: array[None] for name, array in encode_result(result).items()}
    for spec in contract.ENSEMBLE_OUTPUTS:
        assert served[spec.name].ndim == len(spec.dims) and served[spec.name].shape[0] == 1
    assert_same(decode_result(served.get), result)


def test_a_missing_output_is_named():
    outputs = encode_result(several())
    del outputs[contract.RLE_OFFSETS]
    with pytest.raises(ValueError, match=f"lacks output '{contract.RLE_OFFSETS}'"):
        decode_result(outputs.get)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        (contract.POLYGON_OFFSETS, lambda o: o + np.array([0, 0, 0, 1], np.int32)),  # past the end
        (contract.RLE_OFFSETS, lambda o: o[:-1]),  # short of the end
        (contract.CLASS_NAME_OFFSETS, lambda o: o + 1),  # not from 0
        (contract.POLYGON_OFFSETS, lambda o: np.array([0, 4, 0, 4], np.int32)),  # decreasing
        (contract.RLE_OFFSETS, lambda o: np.zeros(0, np.int32)),  # none at all
    ],
    ids=["past-end", "short", "not-from-0", "decreasing", "none"],
)
def test_offsets_that_do_not_fit_their_data_are_rejected(name, change):
    outputs = encode_result(several())
    outputs[name] = change(outputs[name])
    with pytest.raises(ValueError, match="offsets"):
        decode_result(outputs.get)


def test_lengths_that_disagree_are_rejected():
    with pytest.raises(ValueError, match="3 scores but"):
        SegmentationResult(
            image_size=(4, 4),
            scores=np.zeros(3, np.float32),
            boxes=np.zeros((3, 4), np.float32),
            class_ids=np.zeros(3, np.int32),
            class_names=["a", "b", "c"],
            rle_counts=[b"", b"", b""],
            polygons=[EMPTY_POLYGON] * 2,
        )


def test_offsets_that_fit_their_data_but_not_the_detection_count_are_rejected():
    outputs = encode_result(several())
    rle_bytes = len(outputs[contract.RLE_COUNTS])
    outputs[contract.RLE_OFFSETS] = np.array([0, rle_bytes], np.int32)  # one detection's worth
    with pytest.raises(ValueError, match=re.escape("3 scores but {'rle_counts': 1}")):
        decode_result(outputs.get)
