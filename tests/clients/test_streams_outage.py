"""The many-streams CLI (`python -m clients streams`) with 4 streams at once against the real
tritonserver: every frame of every stream answered in order and counted, over system shared
memory and plain gRPC; a server killed (SIGKILL) and restarted mid-run, every stream waiting for
it, registering its regions again and going on; SIGINT and SIGTERM mid-run. However a run ends,
none of the client's shared-memory regions is left in /dev/shm or on the server.

Each stream reads its own short 160x96 video, of a length of its own, so that a count that went
to the wrong stream shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from clients import cli
from clients.streams import stream_names
from tests.clients.cli_runs import (
    after_frame,
    lines,
    read_jsonl,
    regions_in_dev_shm,
    regions_on_server,
    wait_for,
)
from tools.make_sample_video import make_sample_video

DEPTH = 2
SHORT = (5, 6, 7, 8)  # frames of each stream's video when it runs to its end
LONG = (14, 15, 16, 17)  # when the run is cut, so that every stream is still going


def sample_videos(folder: Path, frames: tuple[int, ...]) -> list[Path]:
    return [make_sample_video(folder / f"cam{i}.mp4", n, 160, 96, 10) for i, n in enumerate(frames)]


@pytest.fixture(scope="module")
def short_videos(tmp_path_factory) -> list[Path]:
    return sample_videos(tmp_path_factory.mktemp("short"), SHORT)


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> list[Path]:
    return sample_videos(tmp_path_factory.mktemp("long"), LONG)


def streams_argv(url: str, videos: list[Path], transport: str = "system_shm") -> list[str]:
    argv = ["streams", "--url", url, "--transport", transport, "--depth", str(DEPTH)]
    for video in videos:
        argv += ["--source", str(video)]
    return argv


def results_of(out: Path, videos: list[Path]) -> list[Path]:
    return [out / name / "results.jsonl" for name in stream_names([str(v) for v in videos])]


def check_accounts(out: Path, videos: list[Path], total: tuple[int, ...] | None) -> list[dict]:
    """Every stream's results.jsonl holds its frames 0..n-1 in order, n being its video's length
    when `total` gives it; its summary.json and the top one count exactly what the lines say
    (served + failed + dropped == frames). Returns the streams' summaries."""
    top = json.loads((out / "summary.json").read_text())
    assert [s["source"] for s in top["streams"]] == [str(v) for v in videos]
    summaries = []
    for i, (results, entry) in enumerate(zip(results_of(out, videos), top["streams"], strict=True)):
        records = read_jsonl(results)
        n = len(records) if total is None else total[i]
        assert [r["frame"] for r in records] == list(range(n)), f"{results}: frames out of order"
        served = sum("detections" in r for r in records)
        failed = sum("error" in r for r in records)
        dropped = sum(r.get("dropped", False) for r in records)
        assert served + failed + dropped == n, f"{results}: a line is neither of the three"
        summary = json.loads((results.parent / "summary.json").read_text())
        counted = (summary["frames"], summary["failed"], summary["dropped"])
        assert counted == (n, failed, dropped), f"{results.parent}/summary.json"
        assert (entry["frames"], entry["failed"], entry["dropped"]) == counted
        summaries.append(summary)
    assert top["frames"] == sum(s["frames"] for s in summaries)
    assert top["failed"] == sum(s["failed"] for s in summaries)
    assert top["dropped"] == sum(s["dropped"] for s in summaries)
    return summaries


def no_region_left(url: str, pid: int, dev_shm_before: set[str]) -> None:
    """Nothing new in /dev/shm since `dev_shm_before` (its listing before the run) bears the
    client's pid, and the server at `url` holds no region at all."""
    left_here = sorted(n for n in set(os.listdir("/dev/shm")) - dev_shm_before if str(pid) in n)
    assert left_here == [], "left in /dev/shm"
    assert regions_on_server(url) == [], "left registered on the server"


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["system_shm", "grpc"])
def test_four_streams_answer_every_frame_in_order_and_release_their_memory(
    triton_server, short_videos, tmp_path, monkeypatch, transport
):
    # What each stream finds once its second frame is out: its own regions, on both sides.
    seen_here: set[str] = set()
    seen_on_server: set[str] = set()

    def look() -> None:
        seen_here.update(regions_in_dev_shm())
        seen_on_server.update(regions_on_server(triton_server.grpc_url, os.getpid()))

    after_frame(monkeypatch, 1, look)
    before = set(os.listdir("/dev/shm"))
    out = tmp_path / "out"
    argv = streams_argv(triton_server.grpc_url, short_videos, transport)
    assert cli.main([*argv, "--out-dir", str(out)]) == 0

    summaries = check_accounts(out, short_videos, SHORT)
    assert all(s["failed"] == s["dropped"] == 0 for s in summaries)
    assert all((s["exit_code"], s["stopped_because"]) == (0, None) for s in summaries)
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 0
    ring_regions = 4 * DEPTH if transport == "system_shm" else 0
    assert len(seen_here) == ring_regions, "a ring of DEPTH regions per stream, no more"
    assert seen_on_server == seen_here
    no_region_left(triton_server.grpc_url, os.getpid(), before)


def shm_mapped_by_group(pgid: int) -> set[str]:
    """The /dev/shm files that the processes of group `pgid` have mapped."""
    names: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                names.update(re.findall(r"/dev/shm/(\S+)", (entry / "maps").read_text()))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return names


def kill_and_restart(server) -> None:
    """SIGKILL to tritonserver and its python backend stubs (no goodbye to anyone), then the
    same server started again on the same ports; returns once it is ready."""
    # The python backend's own regions are the server's to remove, which a killed one cannot.
    stubs_memory = {
        name
        for name in shm_mapped_by_group(server.pid)
        if name.startswith("triton_python_backend_shm_region_")
    }
    os.killpg(server.pid, signal.SIGKILL)
    server.stop()  # reaps it
    for name in stubs_memory:
        (Path("/dev/shm") / name).unlink(missing_ok=True)
    server.start()


@pytest.mark.integration
def test_a_server_killed_and_restarted_mid_run_loses_only_the_frames_sent_meanwhile(
    server, long_videos, tmp_path, cli_process
):
    before = set(os.listdir("/dev/shm"))
    out = tmp_path / "out"
    argv = streams_argv(server.grpc_url, long_videos)
    process = cli_process(out, *argv, "--reconnect-timeout-s", "60")
    results = results_of(out, long_videos)
    wait_for(lambda: all(len(lines(r)) >= 3 for r in results))
    registered = regions_on_server(server.grpc_url, process.pid)
    assert len(registered) == 4 * DEPTH, "every stream's ring, while all four are going"
    at_kill = [len(lines(r)) for r in results]
    assert all(n < total for n, total in zip(at_kill, LONG)), "every stream still going"

    kill_and_restart(server)
    # The restarted server starts with no region: the streams register theirs again. Watched
    # until the client ends; each stream holds its ring from then to its end (seconds).
    registered_again: set[str] = set()
    while process.poll() is None:
        registered_again.update(regions_on_server(server.grpc_url, process.pid))
        time.sleep(0.1)
    assert process.returncode == 1, (out.parent / "stderr.txt").read_text()[-3000:]
    assert registered_again == set(registered)

    summaries = check_accounts(out, long_videos, LONG)
    for stream, summary, frames_before in zip(results, summaries, at_kill):
        records = read_jsonl(stream)
        failed = [r["frame"] for r in records if "error" in r]
        # One outage per stream: its failures are one run of frames, all sent after the kill
        # (the server went away or came back without the regions), and every later one served.
        assert failed, f"{stream}: no frame failed while the server was gone"
        assert failed == list(range(failed[0], failed[-1] + 1)), f"{stream}: {failed}"
        assert failed[0] >= frames_before, "a frame answered before the kill stays served"
        assert all(
            "UNAVAILABLE" in records[i]["error"] or "shared memory" in records[i]["error"]
            for i in failed
        ), [records[i]["error"] for i in failed]
        assert all("detections" in r for r in records[failed[-1] + 1 :])
        assert len(records) - failed[-1] - 1 >= DEPTH, "served by the restarted server"
        assert (summary["exit_code"], summary["stopped_because"]) == (1, None)
        assert summary["server_outages"] == 1
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 1
    assert "Traceback" not in (out.parent / "stderr.txt").read_text()
    no_region_left(server.grpc_url, process.pid, before)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_mid_run_stops_every_stream_cleanly(
    triton_server, long_videos, tmp_path, cli_process, signum, code
):
    before = set(os.listdir("/dev/shm"))
    out = tmp_path / "out"
    process = cli_process(out, *streams_argv(triton_server.grpc_url, long_videos))
    results = results_of(out, long_videos)
    wait_for(lambda: all(len(lines(r)) >= 2 for r in results))
    assert len(regions_on_server(triton_server.grpc_url, process.pid)) == 4 * DEPTH
    process.send_signal(signum)
    assert process.wait(60) == code

    stderr = (out.parent / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    summaries = check_accounts(out, long_videos, total=None)
    for summary, frames in zip(summaries, LONG):
        assert summary["frames"] < frames, "stopped before the end of its video"
        # Not a stream that served its whole source: its summary says what stopped it.
        stopped = (summary["exit_code"], summary["stopped_because"])
        assert stopped == (code, f"{signum.name} received")
    top = json.loads((out / "summary.json").read_text())
    assert top["exit_code"] == code
    assert [s["exit_code"] for s in top["streams"]] == [code] * len(LONG)
    said = f"stopped by {signum.name} after {top['frames']} frames; summaries in {out}"
    assert stderr.count("stopped by") == 1 and said in stderr, stderr[-3000:]
    printed = (out.parent / "stdout.txt").read_text()
    assert printed.count(f"stopped early: {signum.name} received") == len(LONG)
    no_region_left(triton_server.grpc_url, process.pid, before)


def test_a_signal_while_the_streams_wait_for_the_server_is_no_success(
    short_videos, tmp_path, cli_process
):
    # No frame was served: each stream's summary says what stopped it, not exit code 0.
    out = tmp_path / "out"
    argv = streams_argv("localhost:1", short_videos[:2])
    process = cli_process(out, *argv, "--reconnect-timeout-s", "600")
    wait_for(lambda: (out.parent / "stderr.txt").read_text().count("retrying in") >= 2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 143

    top = json.loads((out / "summary.json").read_text())
    assert (top["frames"], top["exit_code"]) == (0, 143)
    for entry in top["streams"]:
        assert (entry["exit_code"], entry["stopped_because"]) == (143, "SIGTERM received")
    stderr = (out.parent / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    assert f"stopped by SIGTERM after 0 frames; summaries in {out}" in stderr
