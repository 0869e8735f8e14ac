# Triton with what the python models import, installed at build time (docker-compose.yml builds
# it for the t4 profile on nvcr.io/nvidia/tritonserver:24.10-py3 and for the jetson profile on
# the -py3-igpu image). The python backend's stub runs the image's own python3 and ignores
# PYTHONPATH, so `backends` and torch go into that interpreter's site-packages. The model
# repository is not in the image: compose mounts build/model_repository at /models, read-only.
ARG BASE_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${BASE_IMAGE}

# torch first and on its own: the project leaves it out of its dependencies (an unpinned torch
# there would let any resolve pull a different build). On x86_64 PyPI's wheel is the CUDA build
# (and brings triton, which the gpu target's kernels need). PyPI's aarch64 wheel has no CUDA for
# Jetson, whose target computes on the GPU inside its python stages: the jetson service passes
# the index of NVIDIA's JetPack build as TORCH_INDEX_URL.
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN python3 -m pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch

# A C compiler: Triton-lang (the gpu target's kernels) and backends.contour_trace both compile C
# at run time; install one only where the base image has none.
RUN command -v gcc >/dev/null || (apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*)

# Only what the python models import: backends/ (the client and tools packages stay out).
COPY pyproject.toml /opt/rfdetr-triton/pyproject.toml
COPY backends/ /opt/rfdetr-triton/backends/
# [export] brings rfdetr: the torch engine (an alternative to the TensorRT plan) builds its model.
# The contour tracer is compiled here once, into the image's cache, rather than at server start.
RUN python3 -m pip install --no-cache-dir "/opt/rfdetr-triton[export]" \
 && python3 -c "import backends.contract, backends.triton_model, torch" \
 && python3 -c "import backends.contour_trace as t; t.largest_contours_function()"

# tritonserver, plus --allow-client-shm=true where the release has that flag (Triton >= 2.69).
COPY deploy/start-tritonserver.sh /usr/local/bin/start-tritonserver

EXPOSE 8000 8001 8002
# The base images' entrypoint (nvidia_entrypoint.sh) stays; compose gives the same command.
CMD ["start-tritonserver", "--model-repository=/models", "--model-control-mode=none"]
