# The streaming client (python -m clients.stream_video): numpy, OpenCV, pycocotools and
# tritonclient, no torch (clients and the backends modules they import are torch-free).
FROM python:3.11-slim

# The client's dependencies, as pinned in pyproject.toml (onnxruntime, a server-side
# dependency, is left out).
RUN python -m pip install --no-cache-dir \
      "numpy<2" \
      "opencv-python-headless>=4.8" \
      "pycocotools>=2.0.7" \
      "tritonclient[grpc]==2.51.0" \
      "setuptools<81" \
      tqdm

WORKDIR /opt/rfdetr-triton
COPY backends/ backends/
COPY clients/ clients/
ENV PYTHONPATH=/opt/rfdetr-triton PYTHONUNBUFFERED=1
RUN python -c "import clients, clients.stream_video, sys; assert 'torch' not in sys.modules"

ENTRYPOINT ["python", "-m", "clients.stream_video"]
