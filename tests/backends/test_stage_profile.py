"""The served stages' sampling profiler: what it counts, what it writes, when it starts."""

from __future__ import annotations

import os
import threading
import time

import pytest

from backends.stage_profile import (
    NO_PYTHON_FRAME,
    PROFILE_ENV,
    StackSampler,
    profile_stage_if_asked,
)


def spin_in_marker(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(200))


def test_the_sampled_threads_busy_function_tops_the_report(tmp_path):
    stop = threading.Event()
    worker = threading.Thread(target=spin_in_marker, args=(stop,))
    worker.start()
    try:
        sampler = StackSampler(worker.ident, tmp_path / "report.txt", "worker")
        for _ in range(50):
            sampler.sample()
            time.sleep(0.001)
    finally:
        stop.set()
        worker.join()
    sampler.write()
    title, top, *_ = (tmp_path / "report.txt").read_text().splitlines()
    assert title.startswith("# worker: 50 samples every 2 ms over ")
    share, count, stack = top.split(maxsplit=2)
    assert stack.startswith("test_stage_profile.py:") and " spin_in_marker" in stack.split(" < ")[0]
    assert int(count) >= 45 and share.endswith("%")
    assert not (tmp_path / "report.txt.partial").exists()


def test_a_thread_outside_python_counts_as_no_python_frame(tmp_path):
    sampler = StackSampler(-1, tmp_path / "report.txt", "nobody")  # no thread has this id
    sampler.sample()
    sampler.sample()
    assert sampler.counts == {NO_PYTHON_FRAME: 2}


def test_the_stack_is_cut_at_its_depth(tmp_path):
    sampler = StackSampler(threading.get_ident(), tmp_path / "r.txt", "me", depth=2)
    sampler.sample()
    (stack,) = sampler.counts
    assert len(stack.split(" < ")) == 2 and " sample" in stack.split(" < ")[0]


@pytest.mark.parametrize(
    "options", [{"interval_s": 0}, {"write_every_s": -1}, {"depth": 0}, {"top": 0}]
)
def test_bad_options_are_refused(tmp_path, options):
    with pytest.raises(ValueError, match="must be > 0"):
        StackSampler(1, tmp_path / "r.txt", "x", **options)


def test_nothing_starts_without_the_variable(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    before = threading.active_count()
    assert profile_stage_if_asked("rfdetr_seg_postprocess") is None
    assert threading.active_count() == before


def test_the_variable_starts_a_sampler_reporting_beside_its_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "profiles" / "run"))
    sampler = profile_stage_if_asked("rfdetr_seg_postprocess")
    try:
        assert sampler.thread_id == threading.get_ident()  # the caller's thread: a stage's main one
        assert sampler.path.parent == tmp_path / "profiles"  # made if missing
        assert sampler.path.name == f"run-rfdetr_seg_postprocess-{os.getpid()}.txt"
        assert any(t.name == "stage-profile" and t.daemon for t in threading.enumerate())
        time.sleep(0.05)
        assert sampler.counts  # sampling on its own thread
    finally:
        sampler.stop()


def test_a_prefix_where_nothing_can_be_written_is_refused_naming_it(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(PROFILE_ENV, str(blocker / "run"))
    with pytest.raises(ValueError, match=f"{PROFILE_ENV}=.*a-file/run: cannot write the profile"):
        profile_stage_if_asked("rfdetr_seg_engine")
