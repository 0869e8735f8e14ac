"""backends.rle_runs: a batch traced on threads, started for the call or ahead of it (a crew),
gives what one thread gives, errors still name the batch's first bad mask, and the thread count
follows the batch's toggles."""

from __future__ import annotations

import numpy as np
import pytest

from backends import rle_runs
from backends.polygons import largest_contour_reference
from backends.rle_runs import TracerCrew, largest_contours_from_runs
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

    class RecordingCrew(TracerCrew):  # a spy around the real crew: records the threads started
        def __init__(self, helpers=None):
            super().__init__(helpers)
            asked.append(self.helpers + 1)

    monkeypatch.setattr(rle_runs, "TracerCrew", RecordingCrew)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", max_threads)
    monkeypatch.setattr(rle_runs, "TOGGLES_PER_THREAD", per_thread)
    ends = np.cumsum(counts)
    # Each mask a stack of one-pixel runs in a tall frame: any toggle count, all increasing.
    toggles = np.concatenate([np.arange(n, dtype=np.int32) * 2 for n in counts])
    assert len(largest_contours_from_runs(toggles, ends, np.full(len(counts), 1 << 20))) == len(counts)
    assert asked == [expected]


def some_masks(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return sample_masks(rng) + [rng.random((40, 60)) < 0.5 for _ in range(7)]


@pytest.mark.parametrize("helpers", [0, 1, 3])
def test_a_crew_traces_what_one_thread_traces_call_after_call(monkeypatch, helpers):
    monkeypatch.setattr(rle_runs, "MAX_THREADS", 1)
    batches = [batch_of(some_masks(seed)) for seed in range(3)]
    with TracerCrew(helpers) as crew:
        # One crew for several calls, as the tracer's retry with more room makes.
        for toggles, ends, heights in batches:
            traced = largest_contours_from_runs(toggles, ends, heights, crew)
            single = largest_contours_from_runs(toggles, ends, heights)
            assert len(traced) == len(single) == len(ends)
            for index, (a, b) in enumerate(zip(traced, single, strict=True)):
                np.testing.assert_array_equal(a, b, err_msg=f"mask {index}")


def test_a_crew_that_slept_still_takes_part():
    """Its helpers outwait their 2 ms spin and sleep; a batch posted then wakes them, and the
    call neither hangs nor loses a mask."""
    import time

    toggles, ends, heights = batch_of(some_masks(5))
    expected = largest_contours_from_runs(toggles, ends, heights)
    with TracerCrew(3) as crew:
        time.sleep(0.05)
        traced = largest_contours_from_runs(toggles, ends, heights, crew)
    for a, b in zip(traced, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_crew_keeps_errors_and_can_be_closed_unused():
    masks = [np.eye(6, dtype=bool) for _ in range(6)]
    toggles, ends, heights = batch_of(masks)
    toggles[ends[3] - 1], toggles[ends[3] - 2] = toggles[ends[3] - 2], toggles[ends[3] - 1]
    with TracerCrew(2) as crew, pytest.raises(ValueError, match="mask 3's toggles"):
        largest_contours_from_runs(toggles, ends, heights, crew)
    TracerCrew(3).close()  # never given masks: its helpers stop anyway


def test_a_closed_crew_is_refused_by_name():
    crew = TracerCrew(1)
    crew.close()
    crew.close()  # closing twice does nothing
    with pytest.raises(ValueError, match="TracerCrew is closed"):
        largest_contours_from_runs(*batch_of([np.eye(4, dtype=bool)]), crew)
    with pytest.raises(ValueError, match="helpers must be >= 0"):
        TracerCrew(-1)
