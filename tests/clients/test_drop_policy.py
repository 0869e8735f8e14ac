"""Newest-wins for live sources: the policy object alone, then driven by stream_frames through a
fake server that falls behind by construction (deterministic, no timers), then a real server
outpaced by a synthetic live source."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from clients.drop_policy import DROPPED, NewestWins, newest_wins
from clients.sources import Source
from clients.stream import stream_frames
from clients.streams import run_streams
from tests.clients.test_stream import EmptyResponse, SlotTransport, frame


def take(items, n: int) -> list:
    return [next(items) for _ in range(n)]


def labels(items) -> list:
    """Frames as their index, dropped frames as "dropped"."""
    return ["dropped" if item is DROPPED else int(item[0, 0, 0]) for item in items]


def test_only_the_newest_waiting_frame_survives_and_every_drop_is_answered_in_order():
    policy = NewestWins()
    items = iter(policy)
    policy.put(frame(0))
    assert labels(take(items, 1)) == [0]
    for i in (1, 2, 3):  # the stream is busy: 1 and 2 are replaced while waiting
        policy.put(frame(i))
    assert labels(take(items, 2)) == ["dropped", "dropped"]
    policy.put(frame(4))  # came while the drops were being taken: 3 is dropped too, in order
    policy.finish()
    assert labels(items) == ["dropped", 4]


def test_the_sources_error_ends_the_stream_after_what_was_put():
    policy = NewestWins()
    policy.put(frame(0))
    policy.finish(OSError("camera unplugged"))
    items = iter(policy)
    assert labels(take(items, 1)) == [0]
    with pytest.raises(OSError, match="camera unplugged"):
        next(items)


def test_a_stop_request_ends_the_wait_for_a_silent_camera():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert list(NewestWins(stop)) == []


def test_closing_stops_the_reader():
    read = []

    def endless():
        for i in range(10**6):
            read.append(i)
            yield frame(i % 256)

    frames = newest_wins(endless(), threading.Event(), join_timeout_s=5)
    next(frames)
    frames.close()
    count = len(read)
    assert count < 10**6
    threading.Event().wait(0.1)
    assert len(read) == count, "the reader went on after close()"


class BehindClient:
    """A server that falls behind: while it serves a request, the camera delivers `burst` new
    frames (put straight into the policy); it answers before async_infer returns."""

    def __init__(self, policy: NewestWins, source: list[np.ndarray], burst: int):
        self.policy, self.source, self.burst = policy, iter(source), burst
        self.sent: list[int] = []

    def async_infer(self, model_name, inputs, callback, client_timeout=None, parameters=None):
        self.sent.append(inputs[1])
        for _ in range(self.burst):
            next_frame = next(self.source, None)
            if next_frame is None:
                self.policy.finish()
                break
            self.policy.put(next_frame)
        callback(EmptyResponse(4, 6), None)


@pytest.mark.parametrize("depth", [1, 2])
def test_a_stream_that_falls_behind_drops_the_older_waiting_frames(depth):
    policy = NewestWins()
    source = [frame(i) for i in range(10)]
    policy.put(source[0])
    client = BehindClient(policy, source[1:], burst=3)
    outcomes = list(stream_frames(client, policy, SlotTransport(), depth=depth))
    # Every frame is answered once, in order: served or dropped, nothing queued up.
    assert [o.index for o in outcomes] == list(range(10))
    served = [0, 3, 6, 9]  # each request lets 3 frames come: the 2 older ones are dropped
    assert [o.index for o in outcomes if o.ok] == served == client.sent
    assert all(o.dropped and o.frame is None for o in outcomes if not o.ok)
    assert [int(o.frame[0, 0, 0]) for o in outcomes if o.ok] == served


class InstantCamera(Source):
    """A live source whose frames are all there at once: any server falls behind it."""

    name = "camera"
    live = True
    fps = 30.0

    def __init__(self, count: int):
        self.count = count

    def frames(self):
        rng = np.random.default_rng(0)
        for _ in range(self.count):
            yield rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)


@pytest.mark.integration
def test_a_real_server_outpaced_by_a_live_source_drops_and_counts(triton_server, tmp_path):
    frames = 40
    url = triton_server.grpc_url
    code = run_streams([InstantCamera(frames)], url, transport="grpc", depth=1, out_dir=tmp_path)
    assert code == 1  # dropped frames make the run exit 1
    records = [json.loads(line) for line in (tmp_path / "camera" / "results.jsonl").open()]
    assert [r["frame"] for r in records] == list(range(frames))
    dropped = [r for r in records if r.get("dropped")]
    served = [r for r in records if "detections" in r]
    assert dropped and served and len(dropped) + len(served) == frames
    # Even frame 0 may be replaced before the stream takes it; the newest is never replaced.
    assert records[-1] in served
    summary = json.loads((tmp_path / "camera" / "summary.json").read_text())
    assert (summary["frames"], summary["dropped"], summary["failed"]) == (frames, len(dropped), 0)
    top = json.loads((tmp_path / "summary.json").read_text())
    assert top["streams"][0]["dropped"] == len(dropped)
    assert (top["dropped"], top["exit_code"]) == (len(dropped), 1)
