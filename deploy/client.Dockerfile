# The streaming client (python -m clients): numpy, OpenCV, pycocotools and tritonclient, no
# torch (clients and the backends modules they import are torch-free).
FROM python:3.11-slim

# The client's dependencies, as pinned in pyproject.toml (onnxruntime, a server-side
# dependency, is left out), plus PyAV (--decoder pyav) and cuda-python for --transport cuda:
# tritonclient 2.51's CUDA shared memory imports `cuda.cudart`, which cuda-python 13 dropped.
# The CUDA driver itself comes from the host through the NVIDIA container toolkit.
RUN python -m pip install --no-cache-dir \
      "numpy<2" \
      "opencv-python-headless>=4.8" \
      "pycocotools>=2.0.7" \
      "tritonclient[grpc]==2.51.0" \
      "setuptools<81" \
      tqdm \
      "av>=12" \
      "cuda-python>=12,<13"

WORKDIR /opt/rfdetr-triton
COPY backends/ backends/
COPY clients/ clients/
ENV PYTHONPATH=/opt/rfdetr-triton PYTHONUNBUFFERED=1
RUN python -c "import clients.cli, av, cuda.cudart, sys; assert 'torch' not in sys.modules"

ENTRYPOINT ["python", "-m", "clients"]
