#!/usr/bin/env bash
# Installs tritonserver 2.51 with the python backend, taken from the nvidia-pytriton 0.7.0 wheel,
# into DEST (default .triton/): bin/tritonserver, backends/python/ (with the stub for this
# Python), lib/ (the wheel's bundled libraries, which the copied binaries need on
# LD_LIBRARY_PATH). Only the server is taken: the wheel's own Python requirements (numpy<2,
# an older tritonclient...) never enter the project's environment.
# usage: scripts/fetch_tritonserver.sh [DEST] [PYTHON]
#   STUB_PYTHON_VERSION=3.12 takes the stub for another Python than PYTHON's (a bundle for
#   another host, scripts/gpu_bundle.sh).
set -euo pipefail
dest=${1:-.triton}
python=${2:-python3}
pyver=${STUB_PYTHON_VERSION:-$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
if [ -x "$dest/bin/tritonserver" ] && [ -x "$dest/backends/python/triton_python_backend_stub" ]; then
  echo "tritonserver already installed in $dest"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_35_x86_64 \
  -d "$work/whl" nvidia-pytriton==0.7.0 2>&1 | grep -v '^WARNING: Location' || true
"$python" -m zipfile -e "$work"/whl/nvidia_pytriton-*.whl "$work/x"
ts=$work/x/pytriton/tritonserver
stub=$ts/python_backend_stubs/$pyver/triton_python_backend_stub
[ -f "$stub" ] || { echo "nvidia-pytriton 0.7.0 has no python backend stub for Python $pyver" >&2; exit 1; }
mkdir -p "$dest/bin" "$dest/backends/python" "$dest/lib"
cp "$ts/bin/tritonserver" "$dest/bin/"
cp "$ts/backends/python/libtriton_python.so" "$ts/backends/python/triton_python_backend_utils.py" "$stub" \
  "$dest/backends/python/"
# Every bundled library but the Python runtimes the wheel carries for the stubs of Pythons
# that lack a shared libpython: ours embeds the host's.
for lib in "$work"/x/nvidia_pytriton.libs/*; do
  case $(basename "$lib") in libpython3-*) ;; *) cp "$lib" "$dest/lib/" ;; esac
done
# perf_analyzer (from the tritonclient 2.51 wheel) looks these two up by their plain sonames.
ln -sf "$(basename "$dest"/lib/libb64-*.so.0d)" "$dest/lib/libb64.so.0d"
ln -sf "$(basename "$dest"/lib/libcudart-*.so.12.*)" "$dest/lib/libcudart.so.12"
chmod +x "$dest/bin/tritonserver" "$dest/backends/python/triton_python_backend_stub"
echo "tritonserver 2.51 (python backend, stub for Python $pyver) installed in $dest"
