"""tools.tritonserver: waits for readiness, reports a failed start with the log, and leaves no
process behind (tritonserver and its python backend stubs)."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest
import tritonclient.grpc as grpcclient

from tools.tritonserver import ServerStartError, TritonServer

pytestmark = pytest.mark.integration


def write_echo_model(repository) -> None:
    """A one-line python model: enough to make tritonserver start a backend stub."""
    model = repository / "echo"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        textwrap.dedent(
            """
            backend: "python"
            max_batch_size: 0
            input [{ name: "x" data_type: TYPE_INT32 dims: [ 1 ] }]
            output [{ name: "y" data_type: TYPE_INT32 dims: [ 1 ] }]
            """
        )
    )
    (model / "1" / "model.py").write_text(
        textwrap.dedent(
            """
            import triton_python_backend_utils as pb_utils

            class TritonPythonModel:
                def execute(self, requests):
                    return [
                        pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
                        for r in requests
                    ]
            """
        )
    )


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ready_then_stopped_with_its_stubs(tmp_path):
    write_echo_model(tmp_path / "models")
    server = TritonServer(tmp_path / "models", tmp_path / "server.log")
    with server:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            assert client.is_model_ready("echo")
        pgid = os.getpgid(server.pid)
        stubs = [line for line in os.popen(f"ps -ww -o pid=,cmd= -g {pgid}") if "triton_python_backend_stub" in line]
        assert stubs, "the python model should run in a stub process of the server's group"
    assert not server.is_running()
    assert not process_group_alive(pgid)


def test_failed_start_reports_the_log(tmp_path):
    server = TritonServer(tmp_path / "no-such-repository", tmp_path / "server.log", ready_timeout_s=60)
    with pytest.raises(ServerStartError, match="exited with code"):
        server.start()
    assert not server.is_running()


def test_stop_is_safe_twice(tmp_path):
    (tmp_path / "models").mkdir()
    server = TritonServer(tmp_path / "models", tmp_path / "server.log").start()
    server.stop()
    server.stop()
    assert not server.is_running()


def test_a_hung_server_is_killed(tmp_path):
    (tmp_path / "models").mkdir()
    server = TritonServer(tmp_path / "models", tmp_path / "server.log").start()
    pgid = os.getpgid(server.pid)
    os.killpg(pgid, signal.SIGSTOP)  # hung: SIGTERM stays pending, never handled
    server.stop(timeout_s=1)
    assert not process_group_alive(pgid)
