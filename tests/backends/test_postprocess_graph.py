"""backends.postprocess_graph: a frame replayed from its CUDA graph gets exactly what the eager
launches give it (backends.postprocess_kernel), frame after frame through one graph; graphs are
kept per frame geometry, at most max_graphs; batches and CPU tensors take the eager path."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined

import dataclasses

import numpy as np
import pytest

from backends.postprocess_graph import FrameGraphs, postprocess_batch_graphed, process_graphs
from backends.postprocess_kernel import launch_postprocess
from backends.postprocess_settings import PostprocessSettings
from tools.postprocess_parity import Case, coco_like_classes, make_case

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
cpu_only = pytest.mark.skipif(
    CUDA, reason="CPU tensors run the kernels only in the interpreter, which a GPU host leaves off"
)
SETTINGS = PostprocessSettings(100, 0.3, coco_like_classes())


def frames_of(kind: str, sizes: list[tuple[int, int]], seed: int, device: str, count: int) -> list[Case]:
    """`count` single-frame cases of one geometry and SETTINGS, different outputs each."""
    rng = np.random.default_rng(seed)
    return [
        dataclasses.replace(
            make_case(kind, rng, sizes, num_queries=100, mask_side=78, device=device), settings=SETTINGS
        )
        for _ in range(count)
    ]


def eager(case: Case, polygons=None) -> list:
    return launch_postprocess(case.dets, case.labels, case.masks, case.image_sizes, case.settings, polygons).results()


def assert_identical(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.image_size == other.image_size
        np.testing.assert_array_equal(mine.boxes, other.boxes)
        np.testing.assert_array_equal(mine.scores, other.scores)
        np.testing.assert_array_equal(mine.class_ids, other.class_ids)
        assert mine.rle_counts == other.rle_counts
        assert len(mine.polygons) == len(other.polygons)
        for p, q in zip(mine.polygons, other.polygons, strict=True):
            np.testing.assert_array_equal(p, q)


@needs_cuda
@pytest.mark.parametrize("size", [(1080, 1920), (360, 640)])
def test_replays_give_what_eager_launches_give(size):
    graphs = FrameGraphs()
    cases = frames_of("blobs", [size], seed=size[0], device="cuda", count=4)
    for index, case in enumerate(cases):
        polygons = index != 2  # one frame without polygons
        pending = graphs.launch(case.dets, case.labels, case.masks, size, case.settings, polygons)
        replayed = pending.results()
        assert len(graphs) == 1
        assert sum(len(r.rle_counts) for r in replayed) > 0
        assert_identical(replayed, eager(case, [polygons]))


@needs_cuda
def test_one_graph_per_geometry_the_oldest_dropped():
    graphs = FrameGraphs(max_graphs=2)
    sizes = [(1080, 1920), (720, 1280), (360, 640)]
    cases = {size: frames_of("borders", [size], seed=7, device="cuda", count=1)[0] for size in sizes}
    for size in [*sizes, sizes[0]]:  # the first is dropped by the third, then captured again
        case = cases[size]
        assert_identical(graphs.launch(case.dets, case.labels, case.masks, size, SETTINGS, True).results(), eager(case))
        assert len(graphs) <= 2
    assert len(graphs) == 2


@needs_cuda
def test_served_function_graphs_single_frames_only():
    before = len(process_graphs())
    (single,) = frames_of("blobs", [(480, 848)], seed=3, device="cuda", count=1)
    assert_identical(postprocess_batch_graphed(single.dets, single.labels, single.masks, [(480, 848)], SETTINGS),
                     eager(single))  # fmt: skip
    assert len(process_graphs()) == before + 1
    (pair,) = frames_of("blobs", [(480, 848), (480, 848)], seed=4, device="cuda", count=1)
    assert_identical(postprocess_batch_graphed(pair.dets, pair.labels, pair.masks, pair.image_sizes, SETTINGS),
                     eager(pair))  # fmt: skip
    assert len(process_graphs()) == before + 1


@needs_cuda
def test_bad_outputs_are_refused_before_any_capture():
    graphs = FrameGraphs()
    (case,) = frames_of("blobs", [(360, 640)], seed=5, device="cuda", count=1)
    with pytest.raises(ValueError, match="masks must be"):
        graphs.launch(case.dets, case.labels, case.masks.half(), (360, 640), SETTINGS, True)
    with pytest.raises(ValueError, match="frame size"):
        graphs.launch(case.dets, case.labels, case.masks, (0, 640), SETTINGS, True)
    assert len(graphs) == 0


@cpu_only
def test_cpu_tensors_launch_eagerly():
    rng = np.random.default_rng(2)
    case = make_case("blobs", rng, [(13, 17)], num_queries=12, mask_side=20, device="cpu", num_select=6)
    graphed = postprocess_batch_graphed(case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    assert_identical(graphed, eager(case))
    with pytest.raises(ValueError, match="one frame on a GPU"):
        FrameGraphs().launch(case.dets, case.labels, case.masks, (13, 17), case.settings, True)
