"""The reference postprocess against rfdetr's own PostProcess on the same model outputs; the
same ops on the GPU against the CPU; the settings it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.classes import ClassTable
from backends.postprocess import boxes_to_pixels, postprocess_batch, postprocess_frame, select_topk
from backends.postprocess_settings import PostprocessSettings
from backends.results import SegmentationResult
from backends.rle import decode_mask
from tests.backends.parity import compare, rfdetr_postprocess

Q, C, M = 100, 91, 78


def coco_table() -> ClassTable:
    from rfdetr.assets.coco_classes import COCO_CLASS_NAMES, COCO_CLASSES

    return ClassTable.from_rfdetr(list(COCO_CLASS_NAMES), 90, COCO_CLASSES)


def postprocess_reference(dets, labels, masks, image_size, num_select, threshold, classes) -> SegmentationResult:
    """postprocess_frame on numpy outputs, settings spelled out."""
    settings = PostprocessSettings(num_select, threshold, classes)
    tensors = (torch.from_numpy(a) for a in (dets, labels, masks))
    return postprocess_frame(*tensors, image_size, settings)


def fake_outputs(seed: int, hot: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-shaped outputs: `hot` queries with a confident class and a blob mask."""
    rng = np.random.default_rng(seed)
    dets = rng.uniform(0.05, 0.95, (Q, 4)).astype(np.float32)
    dets[:, 2:] = rng.uniform(0.02, 0.6, (Q, 2))
    labels = rng.normal(-8.0, 1.0, (Q, C)).astype(np.float32)
    queries = rng.choice(Q, hot, replace=False)
    labels[queries, rng.integers(0, C, hot)] = rng.uniform(-1.0, 4.0, hot)
    yy, xx = np.mgrid[0:M, 0:M]
    masks = rng.normal(-3.0, 1.0, (Q, M, M)).astype(np.float32)
    for q in queries:
        cy, cx, r = rng.uniform(0, M), rng.uniform(0, M), rng.uniform(3, 30)
        masks[q] += (8.0 * (1.0 - np.hypot(yy - cy, xx - cx) / r)).astype(np.float32)
    return dets, labels, masks


@pytest.mark.parametrize(
    "image_size", [(1, 1), (7, 13), (175, 312), (480, 640), (721, 1279), (2160, 3840)]
)
def test_matches_rfdetr_postprocess(image_size):
    classes = coco_table()
    dets, labels, masks = fake_outputs(seed=sum(image_size))
    ours = postprocess_reference(dets, labels, masks, image_size, Q, 0.3, classes)
    oracle = rfdetr_postprocess(dets, labels, masks, image_size, Q, 0.3, classes)
    report = compare(ours, oracle)
    assert report.expected > 0
    report.assert_identical()


def test_matches_rfdetr_on_real_model_outputs(nano_export):
    from backends.engine_onnx import OnnxEngine
    from backends.preprocess import preprocess_frame

    classes = ClassTable.load(nano_export.classes)
    engine = OnnxEngine(nano_export.onnx)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    out = engine(preprocess_frame(torch.from_numpy(frame), 312).numpy())
    args = (out["dets"][0], out["labels"][0], out["masks"][0], (360, 640), Q)
    # Random weights score low: threshold 0 keeps all top-100 pairs, a strict test of the order.
    for threshold in (0.0, 0.05):
        report = compare(postprocess_reference(*args, threshold, classes), rfdetr_postprocess(*args, threshold, classes))
        report.assert_identical()


def test_tie_rule_is_descending_score_then_ascending_flat_index():
    labels = torch.zeros((4, 3))  # every pair scores 0.5
    labels[2, 1] = 1.0
    scores, class_ids, query_ids = select_topk(labels, num_select=5)
    flat = (query_ids * 3 + class_ids).tolist()
    assert flat == [7, 0, 1, 2, 3]
    assert scores[0] > scores[1] == scores[4]


def test_one_query_can_yield_several_detections():
    dets, labels, masks = fake_outputs(seed=3, hot=0)
    labels[5, [1, 2, 3]] = 5.0  # person, bicycle, car on the same query
    result = postprocess_reference(dets, labels, masks, (100, 200), Q, 0.5, coco_table())
    assert sorted(result.class_ids.tolist()) == [1, 2, 3]
    assert result.rle_counts[0] == result.rle_counts[1] == result.rle_counts[2]


def test_no_detections_gives_empty_typed_outputs():
    dets, labels, masks = fake_outputs(seed=4, hot=0)
    result = postprocess_reference(dets, labels, masks, (480, 640), Q, 0.5, coco_table())
    assert len(result) == 0
    assert result.boxes.shape == (0, 4) and result.boxes.dtype == np.float32
    assert result.class_ids.dtype == np.int32 and result.rle_counts == [] and result.polygons == []


def test_unnamed_class_ids_are_dropped_after_selection():
    dets, labels, masks = fake_outputs(seed=5, hot=0)
    labels[0, 0] = 6.0  # COCO id 0: no name
    labels[1, 12] = 5.0  # COCO id 12: unused, no name
    labels[2, 1] = 4.0  # person
    result = postprocess_reference(dets, labels, masks, (50, 50), Q, 0.5, coco_table())
    assert result.class_ids.tolist() == [1] and result.class_names == ["person"]


def test_fine_tuned_no_object_column_is_dropped():
    table = ClassTable.from_rfdetr(["cat", "dog"], 2, {1: "person"})
    dets, _, masks = fake_outputs(seed=6, hot=0)
    labels = np.full((Q, 3), -8.0, np.float32)
    labels[0, 2] = 6.0  # the no-object column
    labels[1, 1] = 5.0
    result = postprocess_reference(dets, labels, masks, (64, 64), Q, 0.5, table)
    assert result.class_names == ["dog"]


def test_mask_touching_the_border_keeps_border_pixels():
    dets, labels, masks = fake_outputs(seed=7, hot=0)
    labels[0, 1] = 5.0
    masks[0] = -5.0
    masks[0, :10, :10] = 5.0  # top-left corner blob
    result = postprocess_reference(dets, labels, masks, (97, 131), Q, 0.5, coco_table())
    mask = decode_mask(result.rle_counts[0], 97, 131)
    assert mask[0, 0] and not mask[-1, -1]
    assert [0, 0] in result.polygons[0].tolist()


def test_boxes_are_clamped_to_the_frame():
    boxes = boxes_to_pixels(torch.tensor([[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, -2.0]]), 100, 200)
    assert boxes.tolist() == [[0.0, 0.0, 50.0, 25.0], [100.0, 100.0, 200.0, 100.0]]


def test_a_batch_is_each_frame_alone():
    outputs = [fake_outputs(seed) for seed in (10, 11, 12)]
    sizes = [(97, 131), (480, 640), (1, 1)]
    settings = PostprocessSettings(Q, 0.3, coco_table())
    batch = [torch.from_numpy(np.stack([o[i] for o in outputs])) for i in range(3)]
    results = postprocess_batch(*batch, sizes, settings)
    for (dets, labels, masks), size, result in zip(outputs, sizes, results):
        alone = postprocess_reference(dets, labels, masks, size, Q, 0.3, coco_table())
        assert result.rle_counts == alone.rle_counts and result.class_ids.tolist() == alone.class_ids.tolist()
        np.testing.assert_array_equal(result.boxes, alone.boxes)


def test_polygons_are_chosen_per_frame():
    """Frames of one batch (requests mixed by the batcher) each get polygons or not, whatever the
    deployment's default; the masks are the same either way."""
    outputs = [fake_outputs(seed) for seed in (20, 21, 22)]
    sizes = [(97, 131), (175, 312), (60, 80)]
    batch = [torch.from_numpy(np.stack([o[i] for o in outputs])) for i in range(3)]
    for default in (True, False):
        settings = PostprocessSettings(Q, 0.3, coco_table(), polygons=default)
        every = postprocess_batch(*batch, sizes, settings, [True] * 3)
        mixed = postprocess_batch(*batch, sizes, settings, [False, True, False])
        assert all(len(r) > 0 and all(len(p) > 0 for p in r.polygons) for r in every)
        for frame, (full, chosen) in enumerate(zip(every, mixed, strict=True)):
            assert chosen.rle_counts == full.rle_counts
            if frame == 1:
                assert all(np.array_equal(a, b) for a, b in zip(chosen.polygons, full.polygons, strict=True))
            else:
                assert all(p.shape == (0, 2) for p in chosen.polygons)
        unchosen = postprocess_batch(*batch, sizes, settings)
        assert all(all(len(p) > 0 for p in r.polygons) == default for r in unchosen)


@pytest.mark.parametrize("polygons", [[True, False], [True, False, 1], np.array([True, False, True])])
def test_a_polygon_choice_per_frame_is_required(polygons):
    batch = [torch.from_numpy(np.stack([o[i] for o in [fake_outputs(30)] * 3])) for i in range(3)]
    settings = PostprocessSettings(Q, 0.3, coco_table())
    with pytest.raises(ValueError, match="polygons must be one bool per frame \\(3\\)"):
        postprocess_batch(*batch, [(9, 9)] * 3, settings, polygons)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares the ops on CUDA with the CPU")
@pytest.mark.parametrize("image_size", [(1, 1), (175, 312), (1080, 1920), (2160, 3840)])
def test_gpu_ops_equal_the_cpu_ops(image_size):
    dets, labels, masks = fake_outputs(seed=sum(image_size))
    settings = PostprocessSettings(Q, 0.3, coco_table())
    cpu = postprocess_frame(*(torch.from_numpy(a) for a in (dets, labels, masks)), image_size, settings)
    gpu = postprocess_frame(*(torch.from_numpy(a).cuda() for a in (dets, labels, masks)), image_size, settings)
    assert gpu.class_ids.tolist() == cpu.class_ids.tolist() and len(cpu) > 0
    np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gpu.boxes, cpu.boxes, rtol=0, atol=1e-3)
    height, width = image_size
    differing = [
        int((decode_mask(a, height, width) != decode_mask(b, height, width)).sum())
        for a, b in zip(gpu.rle_counts, cpu.rle_counts)
    ]
    # Bilinear weights on the GPU round differently in the last bit; only pixels whose logit
    # is within float noise of 0 may flip.
    assert max(differing) <= 0.001 * height * width, differing


@pytest.mark.parametrize(
    "num_select, threshold, message",
    [
        (100, float("nan"), "score threshold must be a number in \\[0, 1\\], got nan"),
        (100, -0.1, "got -0.1"),
        (100, 1.5, "got 1.5"),
        (0, 0.5, "num_select must be an integer >= 1, got 0"),
        (2.5, 0.5, "got 2.5"),
    ],
)
def test_settings_that_make_no_sense_are_refused(num_select, threshold, message):
    with pytest.raises(ValueError, match=message):
        PostprocessSettings(num_select, threshold, coco_table())
