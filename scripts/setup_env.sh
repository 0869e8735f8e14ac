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
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
pip install "torch==2.13.0"
# setuptools<81: tritonclient's shared-memory utilities import pkg_resources.
pip install "setuptools<81" -e ".[export,test]"
.venv/bin/python -c "import torch, onnxruntime, tritonclient.grpc
from tools.torchvision_cpu import ensure_torchvision_importable; ensure_torchvision_importable()
import rfdetr" \
  || { echo "setup_env: the environment is incomplete (see pip's output above)" >&2; exit 1; }
scripts/fetch_tritonserver.sh .triton .venv/bin/python
