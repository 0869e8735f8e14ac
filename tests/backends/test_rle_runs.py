"""backends.rle_runs: a batch cut into groups of masks traced on threads gives what one call
gives, errors still name the batch's mask, and the groups balance the toggles."""

from __future__ import annotations

import numpy as np
import pytest

from backends import rle_runs
from backends.polygons import largest_contour_reference
from backends.rle_runs import group_bounds, largest_contours_from_runs
from tests.backends.runs import mask_runs, sample_masks


def batch_of(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    toggles = [mask_runs(mask) for mask in masks]
    return np.concatenate(toggles), np.cumsum([len(t) for t in toggles]), [m.shape[0] for m in masks]


@pytest.fixture
def every_mask_on_threads(monkeypatch):
    """Splits even the smallest batch into MAX_THREADS groups (3 here, whatever the host)."""
    monkeypatch.setattr(rle_runs, "TOGGLES_PER_THREAD", 1)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", 3)


def test_groups_on_threads_trace_what_one_call_traces(every_mask_on_threads, monkeypatch):
    rng = np.random.default_rng(3)
    masks = sample_masks(rng) + [rng.random((40, 60)) < 0.5 for _ in range(7)]
    toggles, ends, heights = batch_of(masks)
    threaded = largest_contours_from_runs(toggles, ends, heights)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", 1)
    single = largest_contours_from_runs(toggles, ends, heights)
    assert len(threaded) == len(single) == len(masks)
    for index, (mask, a, b) in enumerate(zip(masks, threaded, single, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"mask {index}")
        np.testing.assert_array_equal(a, largest_contour_reference(mask), err_msg=f"mask {index}")


def test_an_error_in_a_later_group_names_the_batch_mask(every_mask_on_threads):
    masks = [np.eye(6, dtype=bool) for _ in range(6)]
    toggles, ends, heights = batch_of(masks)
    toggles[ends[4] - 1], toggles[ends[4] - 2] = toggles[ends[4] - 2], toggles[ends[4] - 1]  # mask 4 decreases
    with pytest.raises(ValueError, match="mask 4's toggles"):
        largest_contours_from_runs(toggles, ends, heights)


@pytest.mark.parametrize(
    ("counts", "groups", "expected"),
    [
        ([10] * 8, 4, [0, 2, 4, 6, 8]),  # equal masks: equal groups
        ([10] * 8, 1, [0, 8]),
        ([1000, 2, 2, 2], 3, [0, 1, 4]),  # one mask outweighs the rest: never an empty group
        ([2, 2, 2, 1000], 3, [0, 3, 4]),
        ([4, 4], 4, [0, 1, 2]),  # more groups asked than masks
    ],
)
def test_group_bounds_balance_the_toggles(counts, groups, expected):
    assert group_bounds(np.cumsum(counts), groups) == expected


def test_small_batches_stay_on_the_calling_thread(monkeypatch):
    def no_pool():
        raise AssertionError("a batch under TOGGLES_PER_THREAD toggles went to the thread pool")

    monkeypatch.setattr(rle_runs, "_thread_pool", no_pool)
    toggles, ends, heights = batch_of([np.ones((5, 5), bool), np.eye(4, dtype=bool)])
    assert len(largest_contours_from_runs(toggles, ends, heights)) == 2
