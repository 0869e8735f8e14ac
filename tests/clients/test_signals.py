"""SIGINT and SIGTERM stop the video CLI cleanly: no further frame sent, the frames in flight
recorded, shared memory released on both sides, summary.json written, exit 130 / 143 with one
line saying so. The CLI runs in its own process, signalled as a user or a supervisor would."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from clients.signals import StopOnSignals
from tests.clients.cli_runs import (
    lines,
    regions_in_dev_shm,
    regions_on_server,
    wait_for,
)
from tools.make_sample_video import make_sample_video

FRAMES = 120


def test_a_signal_sets_the_stop_event_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.event.wait(5)
    assert (signals.received, signals.exit_code) == (signal.SIGTERM, 143)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_is_a_stop_request_not_a_keyboard_interrupt():
    with StopOnSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.event.wait(5)
    assert (signals.received, signals.exit_code) == (signal.SIGINT, 130)


def test_outside_the_main_thread_nothing_changes():
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def enter():
        with StopOnSignals():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [before]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("video") / "in.mp4", FRAMES, 160, 96, 10)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_mid_stream_stops_the_run_cleanly(
    triton_server, video, tmp_path, cli_process, signum, code
):
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", triton_server.grpc_url, "--no-video"]
    process = cli_process(out, "stream", *argv, "--transport", "system_shm", "--depth", "3")
    wait_for(lambda: len(lines(out / "results.jsonl")) >= 2)
    process.send_signal(signum)
    assert process.wait(60) == code

    records = [json.loads(line) for line in lines(out / "results.jsonl")]
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    assert f"stopped by {signum.name} after {len(records)} frames" in stderr
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert 2 <= len(records) < FRAMES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == len(records)
    assert (summary["exit_code"], summary["stopped_because"]) == (code, f"{signum.name} received")
    # Its regions are gone from this host and from the server.
    assert regions_in_dev_shm(process.pid) == []
    assert regions_on_server(triton_server.grpc_url, process.pid) == []


def test_a_signal_while_waiting_for_the_server_ends_the_wait(video, tmp_path, cli_process):
    out = tmp_path / "out"
    argv = ["--video", str(video), "--url", "localhost:1", "--reconnect-timeout-s", "600"]
    process = cli_process(out, "stream", *argv)
    wait_for(lambda: "retrying in" in (tmp_path / "stderr.txt").read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 143
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["exit_code"]) == (0, 143)
    assert summary["stopped_because"] == "SIGTERM received"
