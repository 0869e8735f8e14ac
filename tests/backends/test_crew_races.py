"""contour_trace.c's crew under ThreadSanitizer: its helpers, woken or asleep, race with nothing
and change no point (tests/backends/crew_race_harness.c). Skipped where the compiler cannot
build with -fsanitize=thread."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backends.contour_trace import SOURCE, find_compiler

HARNESS = Path(__file__).with_name("crew_race_harness.c")


def test_the_crew_has_no_data_race(tmp_path):
    program = tmp_path / "crew_races"
    build = subprocess.run(
        [*find_compiler(), "-O1", "-g", "-fsanitize=thread", "-std=c11", "-pthread", "-o", str(program),
         str(HARNESS), str(SOURCE)],
        capture_output=True, text=True, check=False,
    )
    if build.returncode != 0:
        pytest.skip(f"no ThreadSanitizer build here: {build.stderr.strip()[-300:]}")
    run = subprocess.run(
        [str(program)], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"},
    )
    if "FATAL: ThreadSanitizer" in run.stderr:  # the sanitizer's runtime, not our code, could not start
        pytest.skip(f"ThreadSanitizer cannot run here: {run.stderr.strip()[-300:]}")
    assert "WARNING: ThreadSanitizer" not in run.stderr, run.stderr[-4000:]
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert "as one thread" in run.stdout
