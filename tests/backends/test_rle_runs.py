"""backends.rle_runs: a batch traced on threads gives what one thread gives, errors still name
the batch's first bad mask, and the thread count follows the batch's toggles."""

from __future__ import annotations

import numpy as np
import pytest

from backends import rle_runs
from backends.polygons import largest_contour_reference
from backends.rle_runs import largest_contours_from_runs
from tests.backends.runs import mask_runs, sample_masks


def batch_of(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    toggles = [mask_runs(mask) for mask in masks]
    return np.concatenate(toggles), np.cumsum([len(t) for t in toggles]), [m.shape[0] for m in masks]


@pytest.fixture
def every_mask_on_threads(monkeypatch):
    """Gives even the smallest batch MAX_THREADS threads (3 here, whatever the host)."""
    monkeypatch.setattr(rle_runs, "TOGGLES_PER_THREAD", 1)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", 3)


def test_threads_trace_what_one_thread_traces(every_mask_on_threads, monkeypatch):
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


def test_an_error_names_the_first_bad_mask_of_the_batch(every_mask_on_threads):
    masks = [np.eye(6, dtype=bool) for _ in range(6)]
    toggles, ends, heights = batch_of(masks)
    for bad in (4, 2):  # masks 2 and 4 decrease; the threads may meet 4 first
        toggles[ends[bad] - 1], toggles[ends[bad] - 2] = toggles[ends[bad] - 2], toggles[ends[bad] - 1]
    with pytest.raises(ValueError, match="mask 2's toggles"):
        largest_contours_from_runs(toggles, ends, heights)


@pytest.mark.parametrize(
    ("counts", "max_threads", "per_thread", "expected"),
    [
        ([4, 4], 4, 10_000, 1),  # under TOGGLES_PER_THREAD: this thread alone
        ([6_000] * 8, 4, 10_000, 4),  # 48 k toggles: 4 threads, capped at MAX_THREADS
        ([6_000] * 8, 4, 20_000, 2),
        ([40_000, 2], 4, 10_000, 2),  # never more threads than masks
    ],
)
def test_the_thread_count_follows_the_toggles(monkeypatch, counts, max_threads, per_thread, expected):
    asked = []

    def recording_tracer(*args):  # a spy around the real tracer: records the threads asked for
        asked.append(args[-1])
        return real(*args)

    real = rle_runs.largest_contours_function()
    monkeypatch.setattr(rle_runs, "largest_contours_function", lambda: recording_tracer)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", max_threads)
    monkeypatch.setattr(rle_runs, "TOGGLES_PER_THREAD", per_thread)
    ends = np.cumsum(counts)
    # Each mask a stack of one-pixel runs in a tall frame: any toggle count, all increasing.
    toggles = np.concatenate([np.arange(n, dtype=np.int32) * 2 for n in counts])
    assert len(largest_contours_from_runs(toggles, ends, np.full(len(counts), 1 << 20))) == len(counts)
    assert asked == [expected]
