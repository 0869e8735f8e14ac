#!/bin/sh
# Starts tritonserver with the arguments given, adding --allow-client-shm=true when this release
# has that flag. From Triton 2.69 (26.05) on, clients may register shared memory only when the
# server is started with it (server PR #8739, docs/protocol/extension_shared_memory.md); earlier
# releases such as 24.10 (2.51) allow it always and refuse the unknown flag. Asking the binary
# itself keeps one image definition right for whichever release TRITON_RELEASE picks.
#
# With RFDETR_CUDA_MPS=1 (the t4 service) it first starts a CUDA MPS control daemon for the
# server alone (tools/cuda_mps.py says why: the python stages' contexts stop time-slicing the
# GPU). Its pipe folder is named only in the server's environment, so clients in other
# containers stay plain CUDA processes. No daemon binary (the driver's utilities are not mounted):
# the server starts without MPS, and says so.
set -eu
if tritonserver --help 2>&1 | grep -q -e '--allow-client-shm'; then
  set -- "$@" --allow-client-shm=true
fi
if [ "${RFDETR_CUDA_MPS:-0}" = 1 ]; then
  if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/rfdetr-cuda-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/rfdetr-cuda-mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d
  else
    echo "start-tritonserver: RFDETR_CUDA_MPS=1 but nvidia-cuda-mps-control is not found: serving without CUDA MPS" >&2
  fi
fi
exec tritonserver "$@"
