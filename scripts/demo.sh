#!/usr/bin/env bash
# The main job on a fresh machine: set up the environment, then export RF-DETR-Seg, build the
# model repository, start tritonserver and stream a video through the ensemble.
# Arguments go to tools.demo (--size, --checkpoint, --video, --out-dir, --transport...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
exec .venv/bin/python -m tools.demo "$@"
