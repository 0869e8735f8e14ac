#!/usr/bin/env bash
# Builds .gpu/: what a run on an offline GPU host (Python 3.12, torch, numpy 2; no internet)
# needs beside the checkout: tritonserver 2.51 with the Python 3.12 stub and perf_analyzer 2.51
# (packed, to fit a transfer) and the wheels that host lacks. Then, on that host:
# scripts/gpu_tests.sh, or scripts/gpu_setup.sh before any other command.
# usage: scripts/gpu_bundle.sh        (needs PyPI; about 51 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
rm -rf .gpu && mkdir -p .gpu/whl
STUB_PYTHON_VERSION=3.12 scripts/fetch_tritonserver.sh .gpu/triton "$python"
# perf_analyzer 2.51 beside tritonserver (benchmarks.perf_analyzer_suite finds it there): the
# tritonclient 2.51.0 wheel's binary, the newest that runs on glibc 2.36 and matches the server;
# the libb64/libcudart links fetch_tritonserver.sh makes in lib/ serve it.
"$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
  -d .gpu/perf tritonclient==2.51.0 2>&1 | grep -v '^WARNING: Location' || true
"$python" -c 'import sys, zipfile
binary = zipfile.ZipFile(sys.argv[1]).read("tritonclient-2.51.0.data/data/bin/perf_analyzer")
open(sys.argv[2], "wb").write(binary)' .gpu/perf/tritonclient-2.51.0-*.whl .gpu/triton/bin/perf_analyzer
chmod +x .gpu/triton/bin/perf_analyzer && rm -rf .gpu/perf
if command -v strip >/dev/null; then strip .gpu/triton/bin/perf_analyzer; fi  # its symbols: 1 MB packed
tar czf .gpu/tritonserver.tar.gz -C .gpu/triton . && rm -rf .gpu/triton
# The host has torch, torchvision, onnxruntime, opencv, grpcio, numpy and pytest; not these.
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl tritonclient==2.73.0 python-rapidjson==1.25 pycocotools==2.0.11 rfdetr==1.11.2 \
  pydeprecate==0.14.0 supervision==0.31.2 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types \
  typing-inspection defusedxml 2>&1 | grep -v '^WARNING: Location' || true
du -sh .gpu
