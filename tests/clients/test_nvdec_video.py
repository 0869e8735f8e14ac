"""NVDEC decoding (the optional --decoder nvdec, clients.nvdec_video).

Any host: with PyNvVideoCodec and CuPy replaced by fakes (FakePyNvVideoCodec decodes with OpenCV
on the host and hands its RGB frames out through DLPack in one reused surface, as the real
decoder's pool does; FakeCupy is numpy), the frames come out in order, BGR, counted, each its own
copy; bad input gets the same clear errors as the other decoders; the CLIs refuse nvdec with a
transport other than cuda, without PyNvVideoCodec or CuPy, and (stream) with annotated.mp4, before
anything runs; nothing imports torch. On a GPU host with PyNvVideoCodec and CuPy: the sample
clip decoded by NVDEC matches OpenCV's decode within the codec's tolerance, and streams through
a real server over CUDA shared memory."""

from __future__ import annotations

import functools
import json
import sys
import types

import cv2
import numpy as np
import pytest

from clients import stream_video, streams
from clients.nvdec_video import NvdecCapture, nvdec_modules
from clients.sources import open_source
from clients.video import DECODERS, VideoError, check_decoder, open_video
from tests.clients.test_torch_free import assert_ran, run_without
from tools.make_sample_video import make_sample_video

CUDA_SHM = "tritonclient.utils.cuda_shared_memory"


class FakeDecodedFrame:
    """PyNvVideoCodec's DecodedFrame stand-in (test fake): a buffer behind __dlpack__, which takes
    the consumer's stream as the real one does (and, on the host, ignores it)."""

    def __init__(self, buffer: np.ndarray):
        self._buffer = buffer

    def __dlpack__(self, stream=None):
        return self._buffer.__dlpack__()

    def __dlpack_device__(self):
        return self._buffer.__dlpack_device__()


class FakeDecodeError(Exception):
    """What FakePyNvVideoCodec raises mid-video (the real one raises PyNvVCException...)."""


class FakeSimpleDecoder:
    """SimpleDecoder stand-in (test fake): decodes with OpenCV, converts to RGB and hands each
    frame out in the same surface, overwritten by the next get_batch_frames call (as the real
    decoder gives its surfaces back). Batches of one frame, as clients.nvdec_video asks for."""

    def __init__(self, fake, enc_file_path, gpu_id=0, use_device_memory=True, output_color_type="NATIVE"):
        fake.opened.append(
            {
                "path": enc_file_path,
                "gpu_id": gpu_id,
                "use_device_memory": use_device_memory,
                "output_color_type": output_color_type,
            }
        )
        self._capture = cv2.VideoCapture(enc_file_path)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if self._capture.isOpened() else 0
        if count <= 0:
            self._capture.release()
            # The real SimpleDecoder's words for a container that reports no frames.
            raise Exception("Elementary streams not supported by Simple Decoder. Invalid input stream.")  # noqa: TRY002
        self._metadata = types.SimpleNamespace(
            width=int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            average_fps=self._capture.get(cv2.CAP_PROP_FPS),
            num_frames=fake.reports or count,
        )
        self._fail_at = fake.fail_at
        self._decoded = 0
        self._surface: np.ndarray | None = None

    def get_stream_metadata(self):
        return self._metadata

    def get_batch_frames(self, batch_size):
        assert batch_size == 1, "the fake has one surface"
        if self._decoded == self._fail_at:
            raise FakeDecodeError(f"CUVID error decoding frame {self._decoded}")
        ok, bgr = self._capture.read()
        if not ok:
            return []
        if self._surface is None:
            self._surface = np.empty_like(bgr)
        self._surface[...] = bgr[..., ::-1]  # RGB, as output_color_type RGB gives it
        self._decoded += 1
        return [FakeDecodedFrame(self._surface)]


class FakePyNvVideoCodec(types.ModuleType):
    """PyNvVideoCodec stand-in (test fake): what clients.nvdec_video uses of it, with the
    decoders it opened recorded.

    Args:
        fail_at: the frame whose decoding raises FakeDecodeError; None: none does.
        reports: the frame count the container reports; None: the true one.
    """

    OutputColorType = types.SimpleNamespace(NATIVE="NATIVE", RGB="RGB", RGBP="RGBP")

    def __init__(self, fail_at: int | None = None, reports: int | None = None):
        super().__init__("PyNvVideoCodec")
        self.fail_at = fail_at
        self.reports = reports
        self.opened: list[dict] = []
        self.SimpleDecoder = functools.partial(FakeSimpleDecoder, self)


class FakeCupy(types.ModuleType):
    """CuPy stand-in (test fake): numpy, with the DLPack imports counted."""

    def __init__(self):
        super().__init__("cupy")
        self.imported = 0

    def from_dlpack(self, frame):
        self.imported += 1
        return np.from_dlpack(frame)

    ascontiguousarray = staticmethod(np.ascontiguousarray)


def install_fake_nvdec(monkeypatch, **decoder) -> tuple:
    """PyNvVideoCodec (FakePyNvVideoCodec(**decoder)) and CuPy replaced by fakes; returns them."""
    fakes = FakePyNvVideoCodec(**decoder), FakeCupy()
    for fake in fakes:
        monkeypatch.setitem(sys.modules, fake.__name__, fake)
    return fakes


@pytest.fixture
def fake_nvdec(monkeypatch):
    return install_fake_nvdec(monkeypatch)


@pytest.fixture
def fake_cuda_shm(monkeypatch):
    """tritonclient's CUDA shared-memory module as an empty module (test fake): the CLIs only
    import it to check that transport cuda can work here."""
    monkeypatch.setitem(sys.modules, CUDA_SHM, types.ModuleType(CUDA_SHM))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("video") / "in.mp4", 8, 320, 180, 15)


def opencv_frames(path) -> list[np.ndarray]:
    with open_video(str(path)) as opened:
        return list(opened.frames())


def test_nvdec_is_a_decoder():
    assert DECODERS == ("opencv", "pyav", "nvdec")


def test_frames_come_out_in_order_as_bgr_counted_and_each_its_own(fake_nvdec, video):
    """The fake decodes what OpenCV decodes, as RGB, into one reused surface: frames equal to
    OpenCV's mean the channels were swapped back and each frame was copied before the next one
    overwrote the surface (otherwise all eight would be the last)."""
    fake, cupy = fake_nvdec
    with open_video(str(video), decoder="nvdec") as opened:
        assert (opened.fps, opened.frame_count, opened.live) == (15.0, 8, False)
        frames = list(opened.frames())
    expected = opencv_frames(video)
    assert len(frames) == len(expected) == 8 == cupy.imported
    for index, (ours, theirs) in enumerate(zip(frames, expected, strict=True)):
        assert ours.dtype == np.uint8 and ours.shape == (180, 320, 3), index
        assert ours.flags.c_contiguous, "CudaShmTransport copies C-contiguous DLPack tensors only"
        np.testing.assert_array_equal(ours, theirs, err_msg=f"frame {index}")
    assert len({frame.tobytes() for frame in frames}) == 8
    assert fake.opened == [{"path": str(video), "gpu_id": 0, "use_device_memory": True, "output_color_type": "RGB"}]


def test_the_channels_are_reversed_on_the_device_array():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30  # R, G, B

    class OneFrame:  # a decoder stand-in (test fake): one frame, then the end
        def __init__(self):
            self.frames = [[FakeDecodedFrame(rgb)], []]

        def get_batch_frames(self, batch_size):
            return self.frames.pop(0)

    capture = NvdecCapture(OneFrame(), FakeCupy(), "clip.mp4")
    ok, bgr = capture.read()
    assert ok and bgr.tolist() == [[[30, 20, 10]] * 3] * 2
    assert capture.read() == (False, None)
    capture.release()
    assert capture.read() == (False, None), "a released capture reads nothing"


def test_a_video_source_of_streams_opens_with_nvdec(fake_nvdec, video):
    with open_source(str(video), decoder="nvdec") as source:
        assert (source.name, source.live, source.fps, source.frame_count) == (str(video), False, 15.0, 8)
        assert len(list(source.frames())) == 8


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("missing", r"cannot open video .*missing\.mp4: no such file"),
        ("garbage", r"cannot open video .*garbage\.mp4: not a video NVDEC can decode on GPU 0, .*Invalid input stream"),
        ("webcam:0", "cannot open webcam webcam:0 with nvdec: webcams are read by OpenCV"),
        ("rtsp://127.0.0.1:1/stream", "with nvdec: it decodes files only .*; decode stream URLs with opencv or pyav"),
    ],
)
def test_bad_input_is_named_with_the_problem(fake_nvdec, tmp_path, spec, problem):
    if spec in ("missing", "garbage"):
        path = tmp_path / f"{spec}.mp4"
        if spec == "garbage":
            path.write_text("not a video")
        spec = str(path)
    with pytest.raises(VideoError, match=problem):
        open_video(spec, decoder="nvdec")


def frames_decoded(monkeypatch, video, **decoder) -> int:
    """Frames the nvdec video yields with FakePyNvVideoCodec(**decoder) installed."""
    install_fake_nvdec(monkeypatch, **decoder)
    with open_video(str(video), decoder="nvdec") as opened:
        return len(list(opened.frames()))


def test_a_decoding_error_ends_the_video_where_it_happened(monkeypatch, video, caplog):
    assert frames_decoded(monkeypatch, video, fail_at=3) == 3
    assert f"video {video}: decoding stopped: CUVID error decoding frame 3" in caplog.text
    assert f"video {video} ended after 3 of the 8 frames it reports" in caplog.text


def test_a_video_shorter_than_its_container_says_is_reported(monkeypatch, video, caplog):
    assert frames_decoded(monkeypatch, video, reports=10) == 8
    assert f"video {video} ended after 8 of the 10 frames it reports" in caplog.text


PURPOSES = {
    "PyNvVideoCodec": "PyNvVideoCodec for NVDEC decoding",
    "cupy": "cupy for the RGB to BGR swap on the GPU",
}


@pytest.mark.parametrize("missing", [["PyNvVideoCodec"], ["cupy"], ["PyNvVideoCodec", "cupy"]])
def test_a_missing_module_is_named_with_the_pip_command(fake_nvdec, monkeypatch, missing):
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ValueError, match="^decoder nvdec needs ") as error:
        check_decoder("nvdec")
    message = str(error.value)
    for name, named in PURPOSES.items():
        assert (named in message) == (name in missing), message
    assert message.endswith(": pip install PyNvVideoCodec cupy-cuda13x (cupy-cuda12x on CUDA 12)")


def cli_argv(command: str, video, out, *options: str) -> list[str]:
    source = ["--video", str(video), "--no-video"] if command == "stream" else ["--source", str(video)]
    return [*source, "--decoder", "nvdec", "--out-dir", str(out), "--url", "localhost:1", *options]


def refused(command: str, argv: list[str], capsys) -> str:
    """Runs the command's CLI, which must exit 2 before anything runs; returns its stderr."""
    main = stream_video.main if command == "stream" else streams.main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["stream", "streams"])
@pytest.mark.parametrize("transport", ["grpc", "system_shm"])
def test_the_clis_refuse_nvdec_without_transport_cuda(fake_nvdec, tmp_path, capsys, command, transport, video):
    out = tmp_path / "out"
    err = refused(command, cli_argv(command, video, out, "--transport", transport), capsys)
    assert "decoder nvdec leaves the frames on the GPU" in err
    assert f"got transport {transport}): use --transport cuda" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["stream", "streams"])
def test_the_clis_refuse_nvdec_without_pynvvideocodec(fake_cuda_shm, monkeypatch, tmp_path, capsys, command, video):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # as if not installed
    out = tmp_path / "out"
    err = refused(command, cli_argv(command, video, out, "--transport", "cuda"), capsys)
    assert "decoder nvdec needs PyNvVideoCodec for NVDEC decoding" in err
    assert "pip install PyNvVideoCodec cupy-cuda13x" in err
    assert not out.exists()


def test_stream_refuses_nvdec_with_the_annotated_video(fake_nvdec, fake_cuda_shm, tmp_path, capsys, video):
    out = tmp_path / "out"
    argv = ["--video", str(video), "--decoder", "nvdec", "--transport", "cuda", "--out-dir", str(out)]
    err = refused("stream", argv, capsys)
    assert "annotated.mp4 is drawn on the host: add --no-video" in err
    assert not out.exists()


def test_the_clis_take_nvdec_with_transport_cuda(fake_nvdec, fake_cuda_shm, tmp_path, video):
    argv = cli_argv("stream", video, tmp_path, "--transport", "cuda")
    assert stream_video.parse_args(argv).decoder == "nvdec"
    argv = cli_argv("streams", video, tmp_path, "--transport", "cuda")
    assert streams.parse_args(argv).decoder == "nvdec"


def test_decoding_with_nvdec_imports_no_torch(video):
    completed = run_without(
        ["torch"],
        f"""
        import sys

        from tests.clients.test_nvdec_video import FakeCupy, FakePyNvVideoCodec

        sys.modules["PyNvVideoCodec"], sys.modules["cupy"] = FakePyNvVideoCodec(), FakeCupy()
        from clients.video import open_video

        with open_video({str(video)!r}, decoder="nvdec") as opened:
            assert len(list(opened.frames())) == 8
        assert "torch" not in [name.split(".")[0] for name in sys.modules if sys.modules[name]]
        print("ok")
        """,
    )
    assert_ran(completed)


# On a GPU host with PyNvVideoCodec and CuPy installed.


def nvdec_missing() -> str | None:
    """Why NVDEC cannot decode here, None when it can."""
    try:
        _, cupy = nvdec_modules()
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no GPU"
    except Exception as error:  # noqa: BLE001 - any reason is a reason to skip, and is shown
        return str(error)
    return None


NVDEC_MISSING = nvdec_missing()
needs_nvdec = pytest.mark.skipif(
    NVDEC_MISSING is not None,
    reason=f"NVDEC decoding needs a GPU, PyNvVideoCodec and CuPy: {NVDEC_MISSING}",
)
# Mean |NVDEC - OpenCV| per frame, in levels of 255. NVDEC's YUV->RGB and FFmpeg's swscale (behind
# OpenCV) upsample chroma differently and may pick different matrices for a clip without colour
# metadata (BT.709 for BT.601 costs 3.9 on this clip); swapped channels cost 32, a neighbouring
# frame 2.5 to 3 more (both measured on this clip with OpenCV).
MEAN_ABS_BOUND = 6.0


@needs_nvdec
def test_nvdec_decodes_the_sample_clip_as_opencv_does(video):
    import cupy

    with open_video(str(video), decoder="nvdec") as opened:
        assert (opened.fps, opened.frame_count) == (15.0, 8)
        frames = list(opened.frames())
    assert all(isinstance(frame, cupy.ndarray) and frame.flags.c_contiguous for frame in frames)
    ours = [cupy.asnumpy(frame).astype(np.int16) for frame in frames]  # host copies to compare
    theirs = [frame.astype(np.int16) for frame in opencv_frames(video)]
    assert len(ours) == len(theirs) == 8
    for index, frame in enumerate(ours):
        assert frame.shape == theirs[index].shape == (180, 320, 3)
        means = [float(np.abs(frame - other).mean()) for other in theirs]
        assert means[index] < MEAN_ABS_BOUND, f"frame {index}: mean |NVDEC - OpenCV| = {means[index]:.2f}"
        assert int(np.argmin(means)) == index, f"frame {index} is closest to OpenCV's {np.argmin(means)}: {means}"


@needs_nvdec
@pytest.mark.integration
def test_nvdec_frames_stream_over_cuda_shared_memory(triton_server, video, tmp_path):
    """The whole path on the GPU: NVDEC, the swap, the CUDA shared-memory slot, the server."""
    import tritonclient.grpc as grpcclient

    out = tmp_path / "out"
    argv = cli_argv("stream", video, out, "--transport", "cuda")
    argv[argv.index("--url") + 1] = triton_server.grpc_url
    assert stream_video.main(argv) == 0
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(8))
    assert not any("error" in line for line in lines)
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        assert client.get_cuda_shared_memory_status(as_json=True).get("regions", {}) == {}
