# build_engines.sh's toolchain: the TensorRT of the Triton release served (BASE_IMAGE, from
# docker-compose.yml's TRITON_RELEASE; 24.10 -> TensorRT 10.5), its trtexec, and the project's `export` extra (rfdetr, torchvision, onnx) for the
# checkpoint -> ONNX export and the plan check. The repository itself is mounted at run time
# (docker-compose.yml, service engine-builder): build_engines.sh runs `python -m tools...` from
# it and writes build/ there.
ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3
FROM ${BASE_IMAGE}

# trtexec: /opt/tensorrt/bin in the NGC image, /usr/src/tensorrt/bin in JetPack's layout.
ENV PATH=/opt/tensorrt/bin:/usr/src/tensorrt/bin:${PATH}

COPY pyproject.toml /opt/rfdetr-triton/pyproject.toml
COPY backends/ /opt/rfdetr-triton/backends/
COPY tools/ /opt/rfdetr-triton/tools/
# The export extra pins torchvision, which pins the torch it was built for: one resolve.
RUN python3 -m pip install --no-cache-dir "/opt/rfdetr-triton[export]" \
 && command -v trtexec

WORKDIR /workspace
ENTRYPOINT ["./build_engines.sh"]
CMD ["--target", "gpu"]
