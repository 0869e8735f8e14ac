#!/usr/bin/env bash
# Creates (or refreshes) the project's environment in .venv and the Triton server in .triton.
# Idempotent: a second run only checks. torch is installed first and pinned: left to a
# dependency's resolver, `torch` would pull several GB of CUDA wheels onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
log=.venv/setup.log
pip() {
  .venv/bin/python -m pip --disable-pip-version-check "$@" >>"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; echo "setup_env: pip $* failed (full log: $log)" >&2; exit 1; }
}
echo "setup_env: installing into .venv (log: $log)"
pip install "torch==2.13.0"
pip install -e ".[export,test,clients]"
# The Triton-lang kernels need triton. A CUDA torch brings its own, pinned to it; the CPU torch
# brings none, and there the kernel tests run in triton's CPU interpreter, exact from 3.9 on.
.venv/bin/python -c "import triton" 2>/dev/null || pip install "triton==3.9.0"
.venv/bin/python -c "import torch, onnxruntime, tritonclient.grpc
from backends.torchvision_cpu import ensure_torchvision_importable; ensure_torchvision_importable()
import rfdetr" \
  || { echo "setup_env: the environment is incomplete (see $log)" >&2; exit 1; }
scripts/fetch_tritonserver.sh .triton .venv/bin/python
# The deploy tests validate docker-compose.yml with Debian's docker-compose (its `config` needs
# no Docker engine) and lint deploy/start-tritonserver.sh with shellcheck; without them those
# tests skip. Installed where this runs as root with apt (CI); elsewhere only suggested.
missing=()
for tool in docker-compose shellcheck; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup_env: apt-get install ${missing[*]}"
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      >>"$log" 2>&1 \
      || echo "setup_env: could not install ${missing[*]} (see $log); their tests will skip" >&2
  else
    echo "setup_env: not installed: ${missing[*]} (apt-get install them to run their tests)" >&2
  fi
fi
