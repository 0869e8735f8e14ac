#!/usr/bin/env bash
# Sets up the environment if needed, then runs the whole test suite (unit, parity, the real
# tritonserver integration tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
exec .venv/bin/python -m pytest "$@"
