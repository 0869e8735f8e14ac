"""Starts the real tritonserver on a model repository and stops it cleanly.

Used by the demo, the benchmarks and the integration tests. Ports default to free ones, so
several servers (a test run beside a demo) never collide. The python backend stub embeds the
interpreter that is first on PATH, so the current environment's bin/ is put first.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tritonclient.grpc as grpcclient

from tools.cuda_mps import CudaMpsDaemon

if TYPE_CHECKING:
    from tools.targets import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRITON_HOME = REPO_ROOT / ".triton"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _own_libpython_dir() -> list[str]:
    """The folder of this interpreter's shared libpython, if it has one.

    The stub embeds whichever libpython3.X.so.1.0 the loader finds first: the system's may be
    an older patch release than the environment's Python, whose extension modules then fail
    (seen: pyenv 3.11.7's _ssl needs _PyModule_Add, which Debian's 3.11.2 lacks, so importing
    rfdetr in the stub failed)."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).exists():
        return [libdir]
    return []


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries its log's tail."""


@dataclass
class TritonServer:
    """A tritonserver process. Use as a context manager, or call start()/stop()."""

    model_repository: Path
    log_path: Path
    triton_home: Path = DEFAULT_TRITON_HOME
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    # Run the server and its stubs as clients of a CUDA MPS daemon of their own (tools.cuda_mps).
    cuda_mps: bool = False
    ready_timeout_s: float = 180.0
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _mps: CudaMpsDaemon | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_target(cls, model_repository: Path, log_path: Path, target: Target) -> TritonServer:
        """A server with the options a tools.targets.Target asks for; not started."""
        return cls(model_repository, log_path, extra_args=target.server_args(), cuda_mps=target.cuda_mps)

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            str(self.triton_home / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.triton_home / 'backends'}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        binary = self.triton_home / "bin" / "tritonserver"
        if not binary.exists():
            raise ServerStartError(f"{binary} not found: run scripts/fetch_tritonserver.sh first")
        env = dict(os.environ)
        libs = [str(self.triton_home / "lib"), *_own_libpython_dir()]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.cuda_mps:
                self._mps = CudaMpsDaemon(self.log_path.parent / f"cuda-mps-{self.grpc_port}-log")
                mps_env = self._mps.start()
                env.update(mps_env)
                if not mps_env:  # no MPS on this host: nothing to stop later
                    self._mps = None
            with self.log_path.open("wb") as log:
                # Own process group: stop() reaches the python backend stubs too.
                self._process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        with grpcclient.InferenceServerClient(self.grpc_url) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ServerStartError(
                        f"tritonserver exited with code {self._process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.is_server_ready():
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.25)
        raise ServerStartError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def under_cuda_mps(self) -> bool:
        """Whether the running server is a client of its own CUDA MPS daemon."""
        return self._mps is not None

    def options_text(self) -> str:
        """The server's extra options and MPS, for a report."""
        mps = "under its own CUDA MPS daemon" if self.under_cuda_mps else "no CUDA MPS"
        return f"{shlex.join(self.extra_args) or 'no extra options'}; {mps}"

    @property
    def pid(self) -> int | None:
        """The tritonserver process id (also its process group's), None when not started."""
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop_server(timeout_s)
        if self._mps is not None:  # after its clients: the daemon quits once they are gone
            self._mps.stop()
            self._mps = None

    def _stop_server(self, timeout_s: float) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
