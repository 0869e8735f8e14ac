"""--no-polygons on the streaming commands: one definition (clients.runner), parsed alike by
`stream` and `streams`, sent as the `polygons` request parameter; on the real server a stream
with it gets the same masks as one without, and no polygons."""

from __future__ import annotations

import json

import pytest

from backends import contract
from clients import cli, command, runner
from clients.stream import stream_frames
from tests.clients.test_stream import FakeClient, SlotTransport, frame
from tools.make_sample_video import make_sample_video

FRAMES = 3


def parse(argv: list[str]):
    return command.parse(cli.build_parser(), argv)[1]


@pytest.mark.parametrize("source", [["stream", "--video", "in.mp4"], ["streams", "--source", "in.mp4"]])
def test_no_polygons_parses_alike_for_both_commands(source):
    assert parse(source).polygons is None  # the deployment's choice: no parameter sent
    assert parse([*source, "--no-polygons"]).polygons is False


def test_the_choice_travels_as_the_polygons_request_parameter():
    assert runner.request_parameters(None) is None
    assert runner.request_parameters(False) == {contract.POLYGONS_PARAMETER: False}
    assert runner.request_parameters(True) == {contract.POLYGONS_PARAMETER: True}


@pytest.mark.parametrize("parameters", [None, {contract.POLYGONS_PARAMETER: False}])
def test_every_frame_of_a_stream_carries_the_parameters(parameters):
    client = FakeClient({i: 0.001 for i in range(5)})
    outcomes = list(stream_frames(client, [frame(i) for i in range(5)], SlotTransport(), depth=2, parameters=parameters))
    assert all(outcome.ok for outcome in outcomes)
    assert client.parameters == [parameters] * 5


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.integration
def test_a_stream_without_polygons_gets_the_same_masks(triton_server, tmp_path):
    video = make_sample_video(tmp_path / "in.mp4", FRAMES, 160, 96, 10)
    runs = {}
    for name, flags in (("with", []), ("without", ["--no-polygons"])):
        argv = ["stream", "--video", str(video), "--url", triton_server.grpc_url, "--no-video"]
        argv += ["--out-dir", str(tmp_path / name), *flags]
        assert cli.main(argv) == 0
        runs[name] = [r["detections"] for r in records(tmp_path / name)]
    with_polygons, without = runs["with"], runs["without"]
    assert sum(len(d) for d in with_polygons) > 0
    assert any(det["polygon"] for frame in with_polygons for det in frame)
    for frame_with, frame_without in zip(with_polygons, without, strict=True):
        assert [d["mask"] for d in frame_without] == [d["mask"] for d in frame_with]
        assert all(d["polygon"] == [] for d in frame_without)
