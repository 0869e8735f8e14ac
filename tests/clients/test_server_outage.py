"""The video CLI against a real tritonserver that goes away mid-run: restarted (the stream goes
on, the system or CUDA shared-memory regions registered again), gone for good (exit 2, summary
written), or gone right after the last frame (the statistics are left out, the run still
succeeds).

Each test has its own server (it stops it); the stream is cut at a known frame by wrapping
clients.stream_video's stream_frames.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import tritonclient.grpc as grpcclient

from clients import stream_video
from tests.clients.cli_runs import after_frame, read_jsonl, regions_in_dev_shm
from tests.clients.test_cuda_transport import needs_cuda_shm
from tools.make_sample_video import make_sample_video
from tools.tritonserver import TritonServer

FRAMES = 12
CUT_AFTER = 3  # the server goes away once this frame's outcome is out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("video") / "in.mp4", FRAMES, 160, 96, 10)


def restart_later(server: TritonServer, down_s: float, restarts: list[threading.Timer]) -> None:
    """Stops the server now and starts it again (same ports) down_s later, in the background."""
    server.stop()
    restarts.append(threading.Timer(down_s, server.start))
    restarts[-1].start()


def run_cli(server, video, out, *options: str) -> int:
    argv = ["--video", str(video), "--url", server.grpc_url, "--out-dir", str(out), "--no-video"]
    return stream_video.main([*argv, *options])


@pytest.mark.integration
def test_a_server_restarted_mid_run_is_waited_for_and_the_stream_goes_on(
    server, video, tmp_path, monkeypatch, caplog
):
    restarts: list[threading.Timer] = []
    after_frame(monkeypatch, CUT_AFTER, lambda: restart_later(server, 1.0, restarts))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = run_cli(
            server, video, out, "--transport", "system_shm", "--reconnect-timeout-s", "60"
        )
    restarts[0].join()

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES)), "every frame answered, in order"
    failed = [r for r in records if "error" in r]
    # The frames sent while the server was down failed, with the reason; none after it came back.
    assert 1 <= len(failed) <= 3
    assert all(CUT_AFTER < r["frame"] <= CUT_AFTER + 3 for r in failed)
    assert all("UNAVAILABLE" in r["error"] or "shared memory" in r["error"] for r in failed)
    assert all("detections" in r for r in records[CUT_AFTER + 4 :])
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"]) == (FRAMES, len(failed))
    assert (summary["exit_code"], summary["stopped_because"]) == (1, None)
    assert summary["server_outages"] == 1
    assert summary["stages"] == [] and "went away" in summary["stats_missing"]
    assert caplog.text.count("the server went away") == 1
    assert regions_in_dev_shm() == []


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["system_shm", pytest.param("cuda", marks=needs_cuda_shm)])
def test_a_server_that_came_back_without_our_regions_gets_them_again(
    server, video, tmp_path, monkeypatch, transport
):
    # Restarted between two frames: the first frame sent to the new server finds no region.
    def restart_now():
        server.stop()
        server.start()

    after_frame(monkeypatch, CUT_AFTER, restart_now)
    out = tmp_path / "out"
    assert run_cli(server, video, out, "--transport", transport, "--depth", "1") == 1

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES))
    failed = [r["frame"] for r in records if "error" in r]
    assert failed == [CUT_AFTER + 1]
    assert "Unable to find shared memory region" in records[CUT_AFTER + 1]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["failed"], summary["server_outages"]) == (1, 1)
    assert regions_in_dev_shm() == []
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}
        assert client.get_cuda_shared_memory_status(as_json=True).get("regions", {}) == {}


@pytest.mark.integration
def test_a_server_gone_for_good_ends_the_run_with_exit_2_and_a_summary(
    server, video, tmp_path, monkeypatch, caplog
):
    after_frame(monkeypatch, CUT_AFTER, server.stop)
    out = tmp_path / "out"
    start = time.monotonic()
    with caplog.at_level(logging.ERROR):
        code = run_cli(
            server, video, out, "--transport", "system_shm", "--reconnect-timeout-s", "1"
        )
    assert code == 2
    assert time.monotonic() - start < 30

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert CUT_AFTER + 1 < len(records) < FRAMES, "the frames in flight were recorded, no more sent"
    assert all("detections" in r for r in records[: CUT_AFTER + 1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == len(records)
    assert summary["failed"] == sum("error" in r for r in records) >= 1
    assert summary["exit_code"] == 2
    assert f"Triton at {server.grpc_url}: not ready after 1 s" in summary["stopped_because"]
    assert summary["stopped_because"] in caplog.text
    assert summary["stages"] == [] and summary["stats_missing"]
    assert regions_in_dev_shm() == []


@pytest.mark.integration
def test_statistics_lost_with_the_server_after_the_last_frame_do_not_fail_the_run(
    server, video, tmp_path, monkeypatch
):
    after_frame(monkeypatch, FRAMES - 1, server.stop)
    out = tmp_path / "out"
    assert run_cli(server, video, out, "--transport", "grpc") == 0

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["failed"], summary["exit_code"]) == (FRAMES, 0, 0)
    assert summary["stages"] == []
    assert "could not be read after the run" in summary["stats_missing"]
    assert "UNAVAILABLE" in summary["stats_missing"]
