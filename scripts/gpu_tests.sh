#!/usr/bin/env bash
# On the offline GPU host, with .gpu/ from scripts/gpu_bundle.sh beside the checkout: sets the
# host up (scripts/gpu_setup.sh: the carried wheels, the checkout importable, tritonserver in
# .triton/) and runs pytest.
# usage: scripts/gpu_tests.sh [PYTEST ARGS...]   (default: everything but tests/deploy, which
#        needs docker-compose)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/gpu_setup.sh
if [ $# -eq 0 ]; then
  set -- tests/backends tests/integration tests/clients tests/tools -q
fi
exec python3 -m pytest -p no:cacheprovider "$@"
