"""The C tracer (backends.contour_trace, through backends.rle_runs.largest_contours_from_runs)
against cv2 on the full mask (backends.polygons.largest_contour_reference), point for point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.contour_trace import build_library
from backends.polygons import largest_contour_reference
from backends.results import EMPTY_POLYGON
from backends.rle_runs import largest_contours_from_runs
from tests.backends.runs import mask_runs, sample_masks


def assert_traced_like_cv2(masks: list[np.ndarray]) -> None:
    """All masks in one call, as the postprocess makes it; each polygon equal to cv2's."""
    toggles = [mask_runs(mask) for mask in masks]
    ends = np.cumsum([len(t) for t in toggles])
    polygons = largest_contours_from_runs(np.concatenate(toggles), ends, [m.shape[0] for m in masks])
    assert len(polygons) == len(masks)
    for index, (mask, polygon) in enumerate(zip(masks, polygons, strict=True)):
        assert polygon.dtype == np.int32 and polygon.ndim == 2 and polygon.shape[1] == 2
        np.testing.assert_array_equal(polygon, largest_contour_reference(mask), err_msg=f"mask {index} {mask.shape}")


def squares(shape: tuple[int, int], corners: list[tuple[int, int]], side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for y, x in corners:
        mask[y : y + side, x : x + side] = True
    return mask


def test_sample_masks():
    assert_traced_like_cv2(sample_masks(np.random.default_rng(0)))


@pytest.mark.parametrize("density", [0.03, 0.2, 0.45, 0.55, 0.8, 0.97])
def test_noise(density):
    rng = np.random.default_rng(int(density * 100))
    assert_traced_like_cv2([rng.random(shape) < density for shape in [(37, 53), (64, 64), (120, 90)]])


def test_thousands_of_small_random_masks():
    rng = np.random.default_rng(7)
    masks = []
    for _ in range(3000):
        height, width = rng.integers(1, 13, 2)
        masks.append(rng.random((height, width)) < rng.random())
    assert_traced_like_cv2(masks)


def test_connectivity_tricks():
    diagonal = np.eye(9, dtype=bool)
    anti_diagonal = diagonal[:, ::-1].copy()
    checkerboard = (np.indices((11, 14)).sum(axis=0) % 2).astype(bool)
    pinch = squares((12, 12), [(1, 1), (5, 5)], 4)  # two squares meeting at one corner
    row, column = np.zeros((7, 9), bool), np.zeros((9, 7), bool)
    row[3, 1:8] = True
    column[1:8, 3] = True
    single = np.zeros((5, 5), bool)
    single[2, 2] = True
    cross = row.copy()
    cross[:, 4] = True
    zigzag = np.zeros((6, 12), bool)
    zigzag[np.arange(12) % 2 + 2, np.arange(12)] = True
    comb = np.zeros((9, 9), bool)
    comb[0, :] = True
    comb[:, ::2] = True
    assert_traced_like_cv2(
        [diagonal, anti_diagonal, checkerboard, ~checkerboard, pinch, row, column, single, cross, zigzag, comb, comb.T]
    )


def test_borders_and_full_masks():
    frame = np.ones((20, 30), bool)
    frame[5:15, 5:25] = False  # a ring on every border
    corners = np.zeros((10, 10), bool)
    corners[[0, 0, 9, 9], [0, 9, 0, 9]] = True
    edges = np.zeros((10, 10), bool)
    edges[0, 2:8] = edges[9, 2:8] = edges[2:8, 0] = edges[2:8, 9] = True
    assert_traced_like_cv2(
        [np.ones((1, 1), bool), np.ones((16, 16), bool), np.ones((3, 40), bool), frame, corners, edges]
    )


def test_holes_with_islands():
    """An island inside a hole is not external for cv2; it is never the largest (strictly
    smaller than its container), so the tracer may trace it and still agree."""
    nested = np.zeros((40, 40), bool)
    for level in range(0, 20, 4):
        nested[level : 40 - level, level : 40 - level] = level % 8 == 0
        nested[level + 2 : 38 - level, level + 2 : 38 - level] = level % 8 != 0
    ring = np.zeros((30, 30), bool)
    ring[2:28, 2:28] = True
    ring[4:26, 4:26] = False
    ring[6:24, 6:24] = True  # the island: an outer border nearly as long as the ring's
    ring[14, 14] = False
    thin = np.zeros((9, 9), bool)
    thin[1:8, 1:8] = True
    thin[2:7, 2:7] = False
    thin[4, 4] = True
    assert_traced_like_cv2([nested, ring, thin, ~ring, ~nested])


def test_equal_areas_take_cv2_order():
    """findContours returns its contours in reverse discovery order: the first of the largest
    is the last discovered (row-major first pixels)."""
    assert_traced_like_cv2(
        [
            squares((12, 20), [(2, 2), (2, 12)], 4),  # same row
            squares((20, 12), [(2, 2), (12, 2)], 4),  # same column
            squares((20, 20), [(2, 12), (12, 2), (12, 12), (2, 2)], 4),
            squares((20, 20), [(3, 2), (2, 12)], 4),  # the right one starts a row higher
        ]
    )


def test_upsampled_logits_like_the_engine():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 78, 78, generator=generator) + torch.linspace(-1.5, 0.5, 3)[:, None, None]
    frames = torch.nn.functional.interpolate(logits[None], size=(1080, 1920), mode="bilinear", align_corners=False)
    small = torch.nn.functional.interpolate(logits[None], size=(312, 176), mode="bilinear", align_corners=False)
    assert_traced_like_cv2([m.numpy() for m in frames[0] > 0] + [m.numpy() for m in small[0] > 0])


def test_many_upsampled_masks_of_random_sizes():
    generator = torch.Generator().manual_seed(11)
    masks = []
    for _ in range(300):
        low, height, width = torch.randint(2, 12, (1,)).item(), *torch.randint(1, 90, (2,)).tolist()
        logits = torch.randn(1, 1, low, low, generator=generator) - torch.rand(1, generator=generator)
        up = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        masks.append((up[0, 0] > 0).numpy())
    assert_traced_like_cv2(masks)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (312, 176)])
def test_frame_sizes(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    masks = [np.zeros(shape, bool), np.ones(shape, bool)] + [rng.random(shape) < p for p in (0.3, 0.6, 0.9)]
    assert_traced_like_cv2(masks)


def test_empty_masks_get_the_empty_polygon():
    polygons = largest_contours_from_runs(np.zeros(0, np.int32), np.zeros(3, np.int64), np.full(3, 5))
    assert [p is EMPTY_POLYGON for p in polygons] == [True] * 3
    assert largest_contours_from_runs(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)) == []


@pytest.mark.parametrize(
    "toggles, ends, heights, message",
    [
        (np.array([0.0, 2.0]), [2], [4], "toggles must be integers"),
        (np.array([[0, 2]]), [2], [4], "toggles must be 1-D"),
        (np.array([-1, 2]), [2], [4], r"toggles must lie in \[0"),
        (np.array([0, 2, 5]), [3], [4], "mask 0 has an odd toggle count"),
        (np.array([0, 2, 5, 7]), [2, 6], [4, 4], "must not decrease nor pass"),
        (np.array([0, 2, 5, 7]), [4, 2], [4, 4], "must not decrease nor pass"),
        (np.array([0, 2]), [2], [4, 4], "heights has 2 masks, ends 1"),
        (np.array([0, 2]), [2], [0], "heights must lie in"),
        (np.array([0, 2, 4, 3, 5, 6]), [2, 6], [4, 4], "mask 1's toggles must be non-negative and increasing"),
        (np.array([0, 2, 2, 3]), [4], [4], "mask 0's toggles must be non-negative and increasing"),
    ],
)
def test_bad_input_is_named(toggles, ends, heights, message):
    with pytest.raises(ValueError, match=message):
        largest_contours_from_runs(toggles, ends, heights)


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(RuntimeError, match="/nonexistent/cc"):
        build_library(tmp_path)
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="no C compiler for the contour tracer"):
        build_library(tmp_path)


def test_builds_once_per_source(monkeypatch, tmp_path):
    library = build_library(tmp_path)
    assert library.exists() and [p.name for p in tmp_path.iterdir()] == [library.name]
    monkeypatch.setenv("CC", "/nonexistent/cc")  # a built library needs no compiler
    assert build_library(tmp_path) == library


def orientations(mask: np.ndarray) -> list[np.ndarray]:
    """The mask under the 8 symmetries of the square: each edge walked in every direction, on the
    lower and the upper side, with the fast walk's one-column steps and the single steps swapped."""
    turns = [np.rot90(mask, k) for k in range(4)]
    return [np.ascontiguousarray(m) for t in turns for m in (t, t[:, ::-1])]


def staircase(rise: int, run: int, width: int = 41) -> np.ndarray:
    """A trapezoid whose lower edge climbs `rise` rows every `run` columns and whose upper edge
    falls as fast: staircases of slope rise/run on both sides (steep for rise > run)."""
    height = 2 * (rise * width) // run + 6
    columns = np.arange(width)
    climb = (rise * columns) // run
    rows = np.arange(height)[:, None]
    return (rows <= height - 3 - climb) & (rows >= 2 + climb // 2)


@pytest.mark.parametrize("rise, run", [(0, 1), (1, 7), (1, 3), (1, 2), (2, 3), (1, 1), (3, 2), (2, 1), (3, 1), (7, 1)])
def test_staircases_of_each_slope_and_direction(rise, run):
    assert_traced_like_cv2(orientations(staircase(rise, run)))


def test_discs_and_upsampled_blobs_at_large_scale():
    """Every slope along one smooth border, as the engine's x14..x50 upsampled masks have."""
    yy, xx = np.mgrid[0:201, 0:181]
    discs = [(yy - 100) ** 2 + (xx - 90) ** 2 < r * r for r in (3.5, 20.2, 89.7)]
    ellipse = ((yy - 90) / 95.0) ** 2 + ((xx - 95) / 40.0) ** 2 < 1  # cut by the frame's edges
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 1, 6, 6, generator=generator) + 0.3
    blobs = torch.nn.functional.interpolate(logits, size=(250, 300), mode="bilinear", align_corners=False)[:, 0] > 0
    assert_traced_like_cv2(discs + [ellipse] + [m.numpy() for m in blobs])


def test_staircase_meeting_other_components():
    """Pixels two rows off a staircase (another component: the walk's column reads see them) and
    pixels touching it diagonally (the same component: the border turns back there)."""
    masks = []
    for rise, run in [(1, 3), (1, 1), (3, 1)]:
        base = staircase(rise, run)
        edge = base & ~np.roll(base, -1, axis=0)  # each column's bottom pixel
        rows, columns = np.nonzero(edge[:-3, :-1])
        for offset, step in [(2, 5), (2, 3), (1, 4)]:
            mask = base.copy()
            for y, x in zip(rows[::step], columns[::step]):
                mask[y + offset, x + (offset == 1)] = True  # offset 1: diagonal to the next column's bottom
            masks += orientations(mask)
    assert_traced_like_cv2(masks)


def test_slope_change_at_the_start_pixel():
    """Diamonds and triangles whose row-major first pixel is a corner where the slope changes, so
    the trace starts, and ends, in the middle of staircases."""
    rows, columns = np.mgrid[0:31, 0:31]
    diamonds = [np.abs(rows - 15) * a + np.abs(columns - 15) * b <= 15 * max(a, b) for a, b in [(1, 1), (1, 3), (3, 1), (2, 3)]]
    wedges = [(rows >= (columns * a) // b) & (rows >= ((30 - columns) * c) // b) & (rows < 28) for a, b, c in [(1, 2, 1), (2, 1, 1), (1, 3, 2)]]
    assert_traced_like_cv2([m for shape in diamonds + wedges for m in orientations(shape)])
