#!/usr/bin/env bash
# On the offline GPU host, with .gpu/ from scripts/gpu_bundle.sh beside the checkout: installs
# the carried wheels into the Python that is first on PATH (the python backend stub embeds it),
# makes the checkout importable there and unpacks tritonserver (with perf_analyzer) into .triton/.
# usage: scripts/gpu_setup.sh     (scripts/gpu_tests.sh runs it before pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .gpu/tritonserver.tar.gz ] || { echo "gpu_setup.sh: no .gpu/ bundle: run scripts/gpu_bundle.sh" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps .gpu/whl/*.whl
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD" > "$site/rfdetr_triton_checkout.pth"
if [ ! -x .triton/bin/tritonserver ] || [ ! -x .triton/bin/perf_analyzer ]; then
  mkdir -p .triton && tar xzf .gpu/tritonserver.tar.gz -C .triton
fi
python3 -c 'import numpy, torch; print(f"numpy {numpy.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")'
