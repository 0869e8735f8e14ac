"""Response decoding, JSON-lines records and drawing, on a result built from real masks.

The response is a real tritonclient InferResult made from the protobuf the server sends, with
the outputs encoded the way the postprocess encodes them (backends.results.encode_result) and
shaped as the ensemble serves them (contract.ENSEMBLE_OUTPUTS: a leading 1): no server needed.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from tritonclient.grpc import InferResult, service_pb2

from backends import contract
from backends.packing import pack
from backends.polygons import EMPTY_POLYGON, foreground_bounds, largest_contour
from backends.results import SegmentationResult, encode_result
from backends.rle import decode_mask, encode_mask
from clients.annotate import annotate, class_colour
from clients.results import error_record, result_from_response, to_json_record

HEIGHT, WIDTH = 90, 120


def shape_masks() -> list[np.ndarray]:
    circle = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(circle, (30, 40), 18, 1, cv2.FILLED)
    rectangle = np.zeros((HEIGHT, WIDTH), np.uint8)
    rectangle[50:80, 70:115] = 1
    return [circle.astype(bool), rectangle.astype(bool)]


def make_result(masks: list[np.ndarray]) -> SegmentationResult:
    boxes = []
    for mask in masks:
        y0, y1, x0, x1 = foreground_bounds(mask)
        boxes.append([x0, y0, x1, y1])
    return SegmentationResult(
        image_size=(HEIGHT, WIDTH),
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.linspace(0.9, 0.6, len(masks)).astype(np.float32),
        class_ids=np.arange(1, len(masks) + 1, dtype=np.int32),
        class_names=[f"class_{i}" for i in range(1, len(masks) + 1)],
        rle_counts=[encode_mask(mask) for mask in masks],
        polygons=[largest_contour(mask) for mask in masks],
    )


SERVED = {spec.name: spec for spec in contract.ENSEMBLE_OUTPUTS}


def infer_result(result: SegmentationResult, changes: dict | None = None) -> InferResult:
    """The ensemble's gRPC response for `result`, as the server serializes it (every output
    under a leading batch axis of 1); `changes` maps an output name to the unbatched array sent
    instead, or to None to leave the output out."""
    outputs: dict[str, np.ndarray | None] = {**encode_result(result), **(changes or {})}
    assert set(outputs) == set(SERVED)
    response = service_pb2.ModelInferResponse(model_name=contract.ENSEMBLE)
    for name, array in outputs.items():
        if array is None:
            continue
        spec = SERVED[name]
        served = np.ascontiguousarray(array)[None]
        assert served.ndim == len(spec.dims) and served.shape[0] == 1, (name, served.shape)
        tensor = response.outputs.add(name=name, datatype=spec.dtype)
        tensor.shape.extend(served.shape)
        response.raw_output_contents.append(served.tobytes())
    return InferResult(response)


def assert_same(decoded: SegmentationResult, expected: SegmentationResult) -> None:
    assert decoded.image_size == expected.image_size
    np.testing.assert_array_equal(decoded.boxes, expected.boxes)
    np.testing.assert_array_equal(decoded.scores, expected.scores)
    assert decoded.class_ids.dtype == np.int32
    assert decoded.class_ids.tolist() == expected.class_ids.tolist()
    assert decoded.class_names == expected.class_names
    assert decoded.rle_counts == expected.rle_counts
    assert all(isinstance(counts, bytes) for counts in decoded.rle_counts)
    assert len(decoded.polygons) == len(expected.polygons)
    for ours, theirs in zip(decoded.polygons, expected.polygons, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_response_decodes_to_the_result_it_carries():
    expected = make_result(shape_masks())
    assert_same(result_from_response(infer_result(expected)), expected)


def test_response_without_detections_decodes_to_an_empty_result():
    expected = make_result([])
    decoded = result_from_response(infer_result(expected))
    assert len(decoded) == 0
    assert decoded.boxes.shape == (0, 4)
    assert_same(decoded, expected)


def test_missing_output_is_named():
    with pytest.raises(ValueError, match=contract.POLYGON_OFFSETS):
        result_from_response(
            infer_result(make_result(shape_masks()), changes={contract.POLYGON_OFFSETS: None})
        )


def test_offsets_that_do_not_fit_the_points_are_rejected():
    result = make_result(shape_masks())
    offsets = pack(result.polygons, EMPTY_POLYGON)[1]
    offsets[-1] += 5
    with pytest.raises(ValueError, match="do not cover"):
        result_from_response(infer_result(result, changes={contract.POLYGON_OFFSETS: offsets}))


def test_json_record_round_trips_masks_and_polygons():
    masks = shape_masks()
    result = make_result(masks)
    record = json.loads(json.dumps(to_json_record(7, result, 0.5)))
    assert record["frame"] == 7
    assert record["timestamp_s"] == 0.5
    assert record["image_size"] == [HEIGHT, WIDTH]
    assert len(record["detections"]) == len(masks)
    for detection, mask, box, polygon in zip(
        record["detections"], masks, result.boxes, result.polygons, strict=True
    ):
        assert detection["box_xyxy"] == box.tolist()
        assert detection["mask"]["size"] == [HEIGHT, WIDTH]
        decoded = decode_mask(detection["mask"]["counts"].encode("ascii"), HEIGHT, WIDTH)
        np.testing.assert_array_equal(decoded, mask)
        assert detection["polygon"] == polygon.tolist()
        assert len(detection["polygon"]) > 2
    assert [d["class_id"] for d in record["detections"]] == [1, 2]
    assert [d["class_name"] for d in record["detections"]] == ["class_1", "class_2"]
    assert [d["score"] for d in record["detections"]] == pytest.approx([0.9, 0.6])


def test_error_record_keeps_frame_and_error():
    assert error_record(3, "boom", None) == {"frame": 3, "timestamp_s": None, "error": "boom"}


def test_annotate_tints_masks_and_leaves_the_rest_and_the_input_alone():
    masks = shape_masks()
    frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    original = frame.copy()
    drawn = annotate(frame, make_result(masks))
    np.testing.assert_array_equal(frame, original)
    # Deep inside the circle: the overlay moved the pixel toward class 1's colour.
    inside = drawn[40, 30].astype(int)
    colour = np.array(class_colour(1))
    assert np.abs(inside - colour).sum() < np.abs(original[40, 30].astype(int) - colour).sum()
    # Outline drawn on the circle's contour, nothing drawn far from every detection.
    x, y = make_result(masks).polygons[0][0]
    assert not np.array_equal(drawn[y, x], original[y, x])
    np.testing.assert_array_equal(drawn[80:, :20], original[80:, :20])


def test_annotate_rejects_a_result_of_another_frame_size():
    with pytest.raises(ValueError, match="result is for"):
        annotate(np.zeros((10, 10, 3), np.uint8), make_result(shape_masks()))


def test_class_colours_are_deterministic_and_distinct():
    assert class_colour(5) == class_colour(5)
    assert len({class_colour(i) for i in range(20)}) == 20
