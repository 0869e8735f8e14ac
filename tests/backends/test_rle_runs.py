"""backends.rle_runs: a batch traced with helper threads (a crew, the process's or its own) gives
what one thread gives, call after call, asleep or woken; errors still name the batch's first bad
mask; only batches worth it wake the helpers."""

from __future__ import annotations

import contextlib

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
def small_batches_use_helpers(monkeypatch):
    """Makes these tests' small batches (a few thousand toggles) worth helpers, on any host."""
    monkeypatch.setattr(rle_runs, "TOGGLES_PER_THREAD", 1)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", 4)


def single_thread(toggles, ends, heights, monkeypatch) -> list[np.ndarray]:
    with monkeypatch.context() as alone:
        alone.setattr(rle_runs, "MAX_THREADS", 1)
        return largest_contours_from_runs(toggles, ends, heights)


def test_threads_trace_what_one_thread_traces(small_batches_use_helpers, monkeypatch):
    rng = np.random.default_rng(3)
    masks = sample_masks(rng) + [rng.random((40, 60)) < 0.5 for _ in range(7)]
    toggles, ends, heights = batch_of(masks)
    with TracerCrew(2) as crew:
        threaded = largest_contours_from_runs(toggles, ends, heights, crew)
    single = single_thread(toggles, ends, heights, monkeypatch)
    assert len(threaded) == len(single) == len(masks)
    for index, (mask, a, b) in enumerate(zip(masks, threaded, single, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"mask {index}")
        np.testing.assert_array_equal(a, largest_contour_reference(mask), err_msg=f"mask {index}")


@pytest.mark.parametrize(
    ("toggles", "max_threads", "helpers"),
    [(0, 8, 0), (9_999, 8, 0), (10_000, 8, 1), (56_528, 8, 7), (56_528, 4, 3), (56_528, 1, 0)],
)
def test_helpers_for_follows_the_toggles(monkeypatch, toggles, max_threads, helpers):
    monkeypatch.setattr(rle_runs, "MAX_THREADS", max_threads)
    assert rle_runs.helpers_for(toggles) == helpers


def test_an_error_names_the_first_bad_mask_of_the_batch(small_batches_use_helpers):
    masks = [np.eye(6, dtype=bool) for _ in range(6)]
    toggles, ends, heights = batch_of(masks)
    for bad in (4, 2):  # masks 2 and 4 decrease; the threads may meet 4 first
        toggles[ends[bad] - 1], toggles[ends[bad] - 2] = toggles[ends[bad] - 2], toggles[ends[bad] - 1]
    with TracerCrew(2) as crew, pytest.raises(ValueError, match="mask 2's toggles"):
        largest_contours_from_runs(toggles, ends, heights, crew)


@pytest.mark.parametrize(
    ("counts", "max_threads", "helped"),
    [
        ([4, 4], 4, False),  # not a helper's worth of toggles: this thread alone
        ([2_000] * 4, 4, False),  # 8 k: still under two threads' worth (TOGGLES_PER_THREAD)
        ([6_000] * 8, 4, True),  # 48 k toggles: the process's crew
        ([6_000] * 8, 1, False),  # MAX_THREADS 1: alone whatever the batch
        ([40_000], 4, False),  # one mask: nothing to share
        ([40_000, 2], 4, True),
    ],
)
def test_helpers_join_only_batches_worth_them(monkeypatch, counts, max_threads, helped):
    woken = []
    real = rle_runs.kept_crew

    @contextlib.contextmanager
    def recording_crew():  # a spy around the real process crew
        with real() as crew:
            woken.append(crew)
            yield crew

    monkeypatch.setattr(rle_runs, "kept_crew", recording_crew)
    monkeypatch.setattr(rle_runs, "MAX_THREADS", max_threads)
    ends = np.cumsum(counts)
    # Each mask a stack of one-pixel runs in a tall frame: any toggle count, all increasing.
    toggles = np.concatenate([np.arange(n, dtype=np.int32) * 2 for n in counts])
    assert len(largest_contours_from_runs(toggles, ends, np.full(len(counts), 1 << 20))) == len(counts)
    assert bool(woken) == helped


def test_the_process_crew_is_kept_and_lent_to_one_thread_at_a_time(small_batches_use_helpers):
    with rle_runs.kept_crew() as first:
        with rle_runs.kept_crew() as meanwhile:  # held: this block gets a crew of its own
            assert meanwhile is not first
        assert meanwhile.closed and not first.closed
    with rle_runs.kept_crew() as again:
        assert again is first
    toggles, ends, heights = batch_of(some_masks(4))
    expected = largest_contours_from_runs(toggles, ends, heights, TracerCrew(0))
    with rle_runs.kept_crew() as crew:
        for a, b in zip(largest_contours_from_runs(toggles, ends, heights, crew), expected, strict=True):
            np.testing.assert_array_equal(a, b)


def some_masks(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return sample_masks(rng) + [rng.random((40, 60)) < 0.5 for _ in range(7)]


@pytest.mark.parametrize("helpers", [0, 1, 3])
def test_a_crew_traces_what_one_thread_traces_call_after_call(small_batches_use_helpers, monkeypatch, helpers):
    batches = [batch_of(some_masks(seed)) for seed in range(3)]
    with TracerCrew(helpers) as crew:
        # One crew for several calls, as the tracer's retry with more room makes.
        for toggles, ends, heights in batches:
            traced = largest_contours_from_runs(toggles, ends, heights, crew)
            single = single_thread(toggles, ends, heights, monkeypatch)
            assert len(traced) == len(single) == len(ends)
            for index, (a, b) in enumerate(zip(traced, single, strict=True)):
                np.testing.assert_array_equal(a, b, err_msg=f"mask {index}")


@pytest.mark.parametrize("wake", [None, 1, 3])
def test_a_crew_asleep_or_woken_takes_part(small_batches_use_helpers, monkeypatch, wake):
    """Helpers asleep are woken by the batch; some or all woken ahead outwait their 1 ms spin
    or not; either way the call neither hangs nor loses a mask."""
    import time

    toggles, ends, heights = batch_of(some_masks(5))
    expected = single_thread(toggles, ends, heights, monkeypatch)
    with TracerCrew(3) as crew:
        for pause in (0.0, 0.01):
            if wake:
                crew.wake(wake)
            time.sleep(pause)
            traced = largest_contours_from_runs(toggles, ends, heights, crew)
            for a, b in zip(traced, expected, strict=True):
                np.testing.assert_array_equal(a, b)


def test_a_crew_keeps_errors_and_can_be_closed_unused(small_batches_use_helpers):
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
    with pytest.raises(ValueError, match="TracerCrew is closed"):
        crew.wake()
    with pytest.raises(ValueError, match="helpers must be >= 0"):
        TracerCrew(-1)


def test_a_batch_not_worth_helpers_leaves_a_given_crew_alone(monkeypatch):
    """The rule of helpers_for holds with a crew too: a call of too few toggles, or of one mask,
    is traced on the calling thread and posts nothing to the crew."""
    posted = []
    real = rle_runs._trace_masks

    def recording_trace(toggles, ends, heights, crew):  # a spy around the real call: records the crew
        posted.append(crew)
        return real(toggles, ends, heights, crew)

    rng = np.random.default_rng(6)
    small = batch_of([rng.random((30, 40)) < 0.5 for _ in range(3)])  # under two threads' worth of toggles
    one_mask = batch_of(some_masks(6)[:1])
    assert rle_runs.helpers_for(int(small[1][-1])) == 0
    expected = [single_thread(*batch, monkeypatch) for batch in (small, one_mask)]
    monkeypatch.setattr(rle_runs, "_trace_masks", recording_trace)
    with TracerCrew(2) as crew:
        for batch, polygons in zip((small, one_mask), expected, strict=True):
            for a, b in zip(largest_contours_from_runs(*batch, crew), polygons, strict=True):
                np.testing.assert_array_equal(a, b)
    assert posted == [None, None]
