"""The postprocess kernels against the reference (backends.postprocess), detection by detection:
same rows in the same order, byte-identical RLE, identical polygons.

Without a CUDA device the kernels run in Triton's interpreter on small frames (TRITON_INTERPRET
is set below, before any kernel module loads), and are compiled for an H100 to catch what only
the compiler checks. With one, the small cases run compiled on the GPU, then full-size ones:
1280x720 to 3840x2160, 100 and 300 queries, every kind of tools.postprocess_parity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.classes import ClassTable
from backends.polygons import largest_contour
from backends.postprocess import postprocess_batch, select_detections
from backends.postprocess_settings import PostprocessSettings
from backends.postprocess_kernel import (
    class_name_flags,
    launch_postprocess,
    postprocess_batch_kernels,
)
from backends.results import EMPTY_POLYGON
from backends.rle import decode_mask
from backends.rle_runs import largest_contours_from_runs
from backends.select_kernel import select_detections_batch
from tests.backends.runs import mask_runs, sample_masks
from tools.postprocess_parity import (
    FULL_SIZES,
    KINDS,
    Case,
    ParityReport,
    coco_like_classes,
    compare_case,
    generate_cases,
    make_case,
)

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")  # the small cases run on either
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (the interpreter runs the small cases)")
cpu_only = pytest.mark.skipif(CUDA, reason="the CUDA tests compile and run the kernels themselves")


def assert_identical(report: ParityReport) -> None:
    """Every detection matched; every RLE and polygon identical (in the interpreter, against
    torch on the CPU: no exception seen). On a GPU, a mask may differ where the upsampled logit
    is within float noise of 0 (tools.postprocess_parity explains each); the rate is checked on
    the full-size cases."""
    assert report.expected > 0, report.format()
    assert report.matched == report.expected == report.got, report.format()
    assert report.polygon_differences_same_mask == 0, report.format()
    if DEVICE.type == "cpu":
        assert report.rle_identical == report.compared == report.expected, report.format()
        assert report.polygon_differences == 0, report.format()
    else:
        assert all(d.explained for d in report.differences), report.format()


# ---- small frames: in the interpreter without a GPU, compiled with one ------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference_on_small_frames(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    sizes = [(97, 131), (7, 13), (1, 1)] if kind != "random" else [(7, 13), (40, 24)]
    case = make_case(kind, rng, sizes, num_queries=12, mask_side=20, device=DEVICE,
                     num_select=6 if kind == "random" else None)
    assert_identical(compare_case(case))


def test_matches_reference_at_nano_mask_size():
    """78x78 logits (RF-DETR-Seg-Nano) to a 175x312 frame, blobs touching the borders."""
    rng = np.random.default_rng(11)
    case = make_case("borders", rng, [(175, 312)], num_queries=30, mask_side=78, device=DEVICE, num_select=8)
    assert_identical(compare_case(case))


def test_every_query_selected():
    """Threshold 0: all Q x C scores are candidates (the key-search path), top Q kept."""
    rng = np.random.default_rng(3)
    case = make_case("all_selected", rng, [(7, 13), (1, 1)], num_queries=30, mask_side=20, device=DEVICE)
    report = compare_case(case)
    assert report.expected == 2 * 30
    assert_identical(report)


def same_results(ours: list, theirs: list) -> bool:
    return all(
        mine.rle_counts == other.rle_counts
        and all(np.array_equal(p, q) for p, q in zip(mine.polygons, other.polygons, strict=True))
        for mine, other in zip(ours, theirs, strict=True)
    )


def test_run_room_overflow_is_recomputed():
    """More toggles than the default room: written again with the exact room."""
    rng = np.random.default_rng(5)
    case = make_case("random", rng, [(40, 24)], num_queries=12, mask_side=20, device=DEVICE, num_select=4)
    args = (case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    pending = launch_postprocess(*args, toggle_capacity=8)
    assert len(pending.fetch().toggles) > 8
    assert same_results(pending.results(), postprocess_batch_kernels(*args))


@pytest.mark.parametrize("kind", ["blobs", "borders", "empty_full"])
def test_small_tiles_skip_uniform_ones(kind):
    """GPU-sized tiles (most of them uniform: inside or outside a blob, not interpolated) and
    several column groups per detection give the same runs as larger tiles."""
    rng = np.random.default_rng(21)
    case = make_case(kind, rng, [(175, 312), (97, 131)], num_queries=12, mask_side=20, device=DEVICE, num_select=6)
    args = (case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    tiled = launch_postprocess(*args, toggle_blocks=(16, 64)).results()
    assert sum(len(r) for r in tiled) > 0
    whole = (256, 512) if DEVICE.type == "cpu" else (64, 32)  # a GPU program's registers are few
    assert same_results(tiled, launch_postprocess(*args, toggle_blocks=whole).results())
    if DEVICE.type == "cpu":
        assert same_results(tiled, postprocess_batch(*args))


def test_polygons_can_be_skipped():
    rng = np.random.default_rng(8)
    case = make_case("blobs", rng, [(97, 131)], num_queries=12, mask_side=20, device=DEVICE)
    args = (case.dets, case.labels, case.masks, case.image_sizes)
    without = dataclasses.replace(case.settings, polygons=False)
    (ours,) = postprocess_batch_kernels(*args, without)
    (full,) = postprocess_batch_kernels(*args, case.settings)
    (reference,) = postprocess_batch(*args, without)
    assert len(ours) == len(full) == len(reference) > 0
    assert [p.shape for p in reference.polygons] == [EMPTY_POLYGON.shape] * len(reference)
    assert ours.rle_counts == full.rle_counts
    assert all(p.shape == EMPTY_POLYGON.shape for p in ours.polygons)


@pytest.mark.parametrize("polygons", [True, False])
def test_copies_only_rows_strings_and_runs_for_polygons(polygons):
    rng = np.random.default_rng(9)
    case = make_case("blobs", rng, [(175, 312)], num_queries=12, mask_side=20, device=DEVICE)
    settings = dataclasses.replace(case.settings, polygons=polygons)
    host = launch_postprocess(case.dets, case.labels, case.masks, case.image_sizes, settings).fetch()
    n = len(host.scores)
    assert n > 0 and len(host.rle_offsets) == n + 1 and host.rle_offsets[-1] == len(host.rle_chars)
    runs = n + len(host.toggles) if polygons else 0
    assert (host.toggles is not None) == polygons
    assert host.device_to_host_bytes == 4 * (1 + 2) + n * 32 + 4 * (n + 1) + len(host.rle_chars) + 4 * runs


@pytest.mark.parametrize("choices", [[True, False, True], [False, True, False]])
def test_polygons_are_chosen_per_frame(choices):
    """Frames of one batch (requests mixed by the batcher) each get polygons or not: the chosen
    frames' polygons are those of a batch where every frame has them (and the reference's), the
    others' are empty, and the RLE is the same either way."""
    rng = np.random.default_rng(12)
    case = make_case("blobs", rng, [(97, 131), (40, 24), (60, 50)], num_queries=12, mask_side=20, device=DEVICE)
    args = (case.dets, case.labels, case.masks, case.image_sizes)
    without = dataclasses.replace(case.settings, polygons=False)  # the request's choice wins
    every = postprocess_batch_kernels(*args, without, [True] * 3)
    mixed = postprocess_batch_kernels(*args, without, choices)
    assert all(len(r) > 0 for r in every)
    for chosen, full, frame in zip(mixed, every, choices, strict=True):
        assert chosen.rle_counts == full.rle_counts
        if frame:
            assert all(np.array_equal(a, b) for a, b in zip(chosen.polygons, full.polygons, strict=True))
            assert any(len(p) for p in chosen.polygons)
        else:
            assert all(p.shape == EMPTY_POLYGON.shape for p in chosen.polygons)
    if DEVICE.type == "cpu":
        assert same_results(mixed, postprocess_batch(*args, without, choices))


@pytest.mark.parametrize("choices, traced", [([False, False], False), ([False, True], True)])
def test_tracer_helpers_are_woken_once_the_toggles_are_known(monkeypatch, choices, traced):
    """results() takes the process's tracer crew, fetch() wakes the helpers the toggles call for
    (before copying them), and the polygons are traced with it; a batch without polygons takes
    no crew."""
    from backends import postprocess_kernel, rle_runs

    events = []

    @contextlib.contextmanager
    def recording_crew():  # spies around the real process crew and its wake
        events.append("lent")
        with rle_runs.kept_crew() as crew:
            yield crew
        events.append("returned")

    real_wake = rle_runs.TracerCrew.wake

    def recording_wake(self, helpers=None):
        events.append(("wake", helpers))
        real_wake(self, helpers)

    monkeypatch.setattr(postprocess_kernel, "kept_crew", recording_crew)
    monkeypatch.setattr(rle_runs.TracerCrew, "wake", recording_wake)
    rng = np.random.default_rng(13)
    case = make_case("blobs", rng, [(40, 24), (60, 50)], num_queries=12, mask_side=20, device=DEVICE)
    args = (case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    with_crew = launch_postprocess(*args, choices).results()
    host = launch_postprocess(*args, choices).fetch()
    expected_wake = ("wake", rle_runs.helpers_for(len(host.toggles) if traced else 0))
    assert events == (["lent", expected_wake, "returned"] if traced else [])
    if traced:
        monkeypatch.setattr(postprocess_kernel, "kept_crew", lambda: rle_runs.TracerCrew(0))
        alone = launch_postprocess(*args, choices).results()
        assert same_results(with_crew, alone)


@pytest.mark.parametrize("choices, runs_copied", [([False, False], False), ([False, True], True)])
def test_runs_cross_only_when_a_frame_wants_polygons(choices, runs_copied):
    rng = np.random.default_rng(13)
    case = make_case("blobs", rng, [(40, 24), (60, 50)], num_queries=12, mask_side=20, device=DEVICE)
    args = (case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    host = launch_postprocess(*args, choices).fetch()
    assert (host.toggles is not None) == runs_copied
    if runs_copied:  # every frame's: one copy (PendingPostprocess.fetch)
        assert len(host.toggle_ends) == len(host.scores) and host.toggle_ends[-1] == len(host.toggles)


def test_runs_are_coco_run_boundaries():
    """Full-height bands: runs go on across column joins, and no boundary is written there."""
    rng = np.random.default_rng(12)
    case = make_case("borders", rng, [(97, 131)], num_queries=12, mask_side=20, device=DEVICE, num_select=6)
    host = launch_postprocess(case.dets, case.labels, case.masks, case.image_sizes, case.settings).fetch()
    (reference,) = postprocess_batch(case.dets, case.labels, case.masks, case.image_sizes, case.settings)
    starts = np.concatenate([[0], host.toggle_ends[:-1]])
    wraps = 0
    for rle, first, last in zip(reference.rle_counts, starts, host.toggle_ends, strict=True):
        mask = decode_mask(rle, 97, 131)
        np.testing.assert_array_equal(host.toggles[first:last], mask_runs(mask))
        wraps += int(np.any(mask[-1, :-1] & mask[0, 1:]))
    assert wraps > 0  # the case has runs across column joins


def test_empty_batch_and_no_detection():
    classes = ClassTable(("a", "b"))
    settings = PostprocessSettings(5, 1.0, classes)  # nothing scores above 1
    dets, labels, masks = (torch.rand(*shape, device=DEVICE) for shape in ((2, 4, 4), (2, 4, 2), (2, 4, 6, 6)))
    results = postprocess_batch_kernels(dets, labels, masks, [(5, 7), (9, 3)], settings)
    assert [len(r) for r in results] == [0, 0]
    assert [r.image_size for r in results] == [(5, 7), (9, 3)]
    assert postprocess_batch_kernels(dets[:0], labels[:0], masks[:0], [], settings) == []


def _reference_rows(case: Case, frame: int):
    sel = select_detections(case.dets[frame], case.labels[frame], case.image_sizes[frame], case.settings)
    return tuple(t.cpu().numpy() for t in (sel.query_ids, sel.class_ids, sel.scores, sel.boxes))


@pytest.mark.parametrize("capacity", [16, 64])
def test_selection_key_search_with_ties_and_nan(capacity):
    """More candidates than `capacity`: the k-th largest key is searched; tied scores keep the
    reference's order (ascending flat index), a NaN score takes a slot and is dropped."""
    classes = coco_like_classes()
    rng = np.random.default_rng(capacity)
    q, c = 10, 91
    labels = rng.choice(np.float32([-3.0, 0.5, 1.0, 2.0]), (2, q, c)).astype(np.float32)
    labels[0, 3, 7] = np.nan
    dets = rng.uniform(-0.1, 1.1, (2, q, 4)).astype(np.float32)
    sizes = [(13, 7), (480, 640)]
    settings = PostprocessSettings(12, 0.1, classes)
    tensors = (torch.from_numpy(dets).to(DEVICE), torch.from_numpy(labels).to(DEVICE), torch.zeros(2, q, 1, 1))
    case = Case("ties", *tensors, sizes, settings)
    frames = torch.tensor(sizes, dtype=torch.int32, device=DEVICE)
    sel = select_detections_batch(
        case.labels.sigmoid(), case.dets, frames, class_name_flags(classes, c, DEVICE),
        settings.num_select, settings.score_threshold, capacity=capacity,
    )
    for frame in range(2):
        queries, class_ids, scores, boxes = _reference_rows(case, frame)
        n = int(sel.counts[frame])
        rows = sel.rows[frame, :n].cpu().numpy()
        assert n == len(queries) > 0
        np.testing.assert_array_equal(rows[:, 0], queries)
        np.testing.assert_array_equal(rows[:, 1], class_ids)
        np.testing.assert_array_equal(rows[:, 2].view(np.float32), scores)
        np.testing.assert_array_equal(rows[:, 3:7].view(np.float32), boxes)


def test_selection_when_num_select_exceeds_the_grid():
    classes = ClassTable(("a", None, "c"))
    q, c = 4, 3
    labels = torch.randn(1, q, c, device=DEVICE)
    dets = torch.rand(1, q, 4, device=DEVICE)
    settings = PostprocessSettings(50, 0.0, classes)  # k = min(50, 12)
    sel = select_detections_batch(
        labels.sigmoid(), dets, torch.tensor([[10, 20]], dtype=torch.int32, device=DEVICE),
        class_name_flags(classes, c, DEVICE), settings.num_select, settings.score_threshold,
    )
    reference = select_detections(dets[0], labels[0], (10, 20), settings)
    n = int(sel.counts[0])
    assert n == len(reference.query_ids) == 8  # 12 pairs, the 4 of class 1 (no name) dropped
    np.testing.assert_array_equal(sel.rows[0, :n, 0].cpu().numpy(), reference.query_ids.cpu().numpy())


# ---- host side: runs -> polygons (numpy and cv2, no kernel) ------------------------------------


def test_polygons_from_runs_match_the_full_mask():
    masks = sample_masks(np.random.default_rng(1))
    toggles = [mask_runs(m) for m in masks]
    ends = np.cumsum([len(t) for t in toggles])
    polygons = largest_contours_from_runs(np.concatenate(toggles), ends, np.array([m.shape[0] for m in masks]))
    assert len(polygons) == len(masks)
    for mask, polygon in zip(masks, polygons, strict=True):
        np.testing.assert_array_equal(polygon, largest_contour(mask))


# ---- compiled for a GPU without one ----------------------------------------------------------

_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from backends.mask_region_kernel import _regions_kernel
from backends.rle_kernel import _toggles_kernel
from backends.rle_strings_kernel import _strings_kernel
from backends.select_kernel import _select_kernel

P, I = "*fp32", "*i32"
def build(fn, types, constants, **options):
    signature = {name: "constexpr" if name in constants else types[name] for name in fn.arg_names}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants)
    triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)

build(_select_kernel, dict(probs_ptr=P, dets_ptr=P, frames_ptr=I, has_name_ptr="*i8", scratch_ptr="*i64",
      rows_ptr=I, counts_ptr=I, n_flat="i32", num_queries="i32", num_classes="i32", k="i32", thr_bits="i32"),
      dict(IDX_BITS=15, CAP=1024, CHUNK=8, BLOCK=2048), num_warps=8, enable_fp_fusion=False)
build(_regions_kernel, dict(rows_ptr=I, counts_ptr=I, masks_ptr=P, frames_ptr=I, scales_ptr=P, table_ptr=I,
      regions_ptr=I, batch="i32", rows_per_frame="i32", num_queries="i32", mask_h="i32", mask_w="i32"),
      dict(B_PAD=4, BLOCK_H=32, BLOCK_W=128), num_warps=4, enable_fp_fusion=False)
for write in (False, True):
    for store in (False, True):
        build(_toggles_kernel, dict(masks_ptr=P, table_ptr=I, regions_ptr=I, counts_ptr=I, frames_ptr=I,
              scales_ptr=P, groups_ptr=I, columns_ptr=I, ends_ptr=I, toggles_ptr=I, batch="i32",
              num_queries="i32", mask_h="i32", mask_w="i32", num_groups="i32", capacity="i32"),
              dict(B_PAD=4, G_PAD=64, BLOCK_Y=32, BLOCK_X=32, WRITE=write, STORE_COLUMNS=store,
                   FOUR_TAP=False, SPAN=16), num_warps=4, enable_fp_fusion=False)
for write in (False, True):
    build(_strings_kernel, dict(toggles_ptr=I, ends_ptr=I, table_ptr=I, frames_ptr=I, counts_ptr=I, totals_ptr=I,
          block_ends_ptr=I, chars_ptr="*u8", offsets_ptr=I, batch="i32", capacity="i32", char_capacity="i32",
          search_steps="i32"), dict(B_PAD=32, BLOCK=1024, CHUNKS=5, WRITE=write), num_warps=4)
print("compiled")
"""


@cpu_only
def test_kernels_compile_for_an_h100():
    """The interpreter does not type-check like the compiler: compile every kernel for sm_90
    (Triton's own ptxas, no GPU needed)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]


# ---- CUDA: full size ---------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("engine", [(100, 78), (300, 192)], ids=["100q-78", "300q-192"])
@pytest.mark.parametrize("size", FULL_SIZES[:3], ids=["720p", "1080p", "4k"])
def test_cuda_matches_reference_at_full_size(size, engine):
    num_queries, side = engine
    rng = np.random.default_rng(size[0] + num_queries)
    total = ParityReport()
    for kind in KINDS:
        total.add(compare_case(make_case(kind, rng, [size], num_queries, side, "cuda")))
    assert total.expected > 0
    assert not total.failures(), total.format()


@needs_cuda
def test_cuda_mixed_batches():
    total = ParityReport()
    for case in generate_cases(24, "cuda", seed=1):
        total.add(compare_case(case))
    assert not total.failures(), total.format()
