"""A private CUDA MPS control daemon for one tritonserver and its python backend stubs.

Every python stage of the gpu target is its own stub process with its own CUDA context (three
preprocess, one engine, three postprocess instances, and the server). Without MPS the GPU
time-slices between those contexts: one context's kernels never overlap another's, and each
switch costs. Under MPS the stubs' kernels and copies share the GPU as one context's streams would
(docs.nvidia.com/deploy/mps, "Reduced GPU context switching"). On an H200 host, the ensemble over
CUDA shared memory served 555 -> 850 frames/s at concurrency 16 with nothing else changed
(benchmarks/results/h200/perf-analyzer/mps/summary.md).

The daemon is this server's own: a pipe folder of its own (CUDA_MPS_PIPE_DIRECTORY, a new one
under the temporary folder), which only the server's environment names, so other CUDA programs
on the host (a client's CUDA shared memory included) are not made MPS clients, and it is quit
when the server stops. Where the daemon's binary is missing (CPU hosts, Jetson) the server runs
without it and the log says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CONTROL_BINARY = "nvidia-cuda-mps-control"  # in the driver's utilities (NVIDIA_DRIVER_CAPABILITIES utility)


class CudaMpsError(RuntimeError):
    """The MPS control daemon exited or did not open its pipe; the message carries its log."""


class CudaMpsDaemon:
    """nvidia-cuda-mps-control in the foreground: its logs in `log_dir`, its pipe folder a new
    short one under the system's temporary folder (the daemon's sockets live there, and a Unix
    socket's path may not pass 107 bytes), removed when it stops."""

    def __init__(self, log_dir: Path, ready_timeout_s: float = 10.0) -> None:
        self.log_dir = log_dir
        self.pipe_dir = Path(tempfile.mkdtemp(prefix="rfdetr-mps-"))
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process's environment needs to be this daemon's client."""
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def start(self) -> dict[str, str]:
        """Starts the daemon; returns env for its clients, or {} when this host has no MPS.

        Raises:
            CudaMpsError: the binary is there but the daemon exited or opened no pipe in time.
        """
        binary = shutil.which(CONTROL_BINARY)
        if binary is None:
            logger.warning("%s not found: serving without CUDA MPS (the stages' contexts time-slice)", CONTROL_BINARY)
            shutil.rmtree(self.pipe_dir, ignore_errors=True)
            return {}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # -f: foreground, so this process owns it (-d forks a daemon nothing here would track).
        self._process = subprocess.Popen(
            [binary, "-f"],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while not (self.pipe_dir / "control").exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CudaMpsError(f"{CONTROL_BINARY} did not open {self.pipe_dir / 'control'}:\n{self.log_tail()}")
            time.sleep(0.05)
        logger.info("CUDA MPS control daemon started (pipe %s)", self.pipe_dir)
        return self.env

    def stop(self, timeout_s: float = 10.0) -> None:
        """Asks the daemon to quit (it stops its MPS server once the clients are gone), then waits."""
        if self._process is None:
            return
        if self._process.poll() is None:
            try:
                subprocess.run(
                    [self._process.args[0]],
                    input=b"quit\n",
                    env={**os.environ, **self.env},
                    timeout=timeout_s,
                    check=False,
                    capture_output=True,
                )
                self._process.wait(timeout_s)
            except (subprocess.TimeoutExpired, OSError):
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self.pipe_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        path = self.log_dir / "control.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no control.log)"
