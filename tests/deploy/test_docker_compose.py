"""docker-compose.yml: the t4 and jetson deployments carry the settings they depend on, every
image installs at build time, and the engine builder, client and perf_analyzer services are wired
to the server.

No Docker engine runs here: the structure is checked from the YAML and the Dockerfiles' text, and
the docker-compose CLI validates the file when it is installed (it needs no engine for `config`).
No image is built here.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tools.tritonserver import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REPOSITORY_MOUNT = "./build/model_repository:/models"
PROFILES = ("t4", "jetson", "build", "client", "perf")
SERVER_IMAGES = {
    "t4": "nvcr.io/nvidia/tritonserver:24.10-py3",
    "jetson": "nvcr.io/nvidia/tritonserver:24.10-py3-igpu",
}
SDK_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3-sdk"
SERVER_URL = "${TRITON_URL:-triton:8001}"  # the server services' network alias, gRPC port


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    """{profile: service}; YAML merge keys (<<) are resolved by the loader, as Compose does."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    by_profile = {}
    for service in compose["services"].values():
        (profile,) = service["profiles"]
        assert profile not in by_profile, f"two services in profile {profile}"
        by_profile[profile] = service
    return by_profile


def words(value: str | list[str] | None) -> list[str]:
    """A compose command or entrypoint (string or list) as a list of words."""
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(word) for word in value]


def dockerfile(service: dict) -> str:
    build = service["build"]
    return (REPO_ROOT / build.get("context", ".") / build["dockerfile"]).read_text()


def instructions(text: str, keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.split(None, 1)[1]
        for line in joined.splitlines()
        if line.strip().upper().startswith(keyword + " ")
    ]


def test_every_profile_has_its_service(services):
    assert set(services) == set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_service_builds_from_a_dockerfile_in_the_project(services, profile):
    service = services[profile]
    if profile == "perf":  # nothing to add to the SDK image: perf_analyzer 2.51 ships in it
        assert service["image"] == SDK_IMAGE and "build" not in service
        return
    build = service["build"]
    assert build["context"] == "."
    assert build["dockerfile"].startswith("deploy/")
    assert (REPO_ROOT / build["dockerfile"]).is_file(), build["dockerfile"]
    # BuildKit's per-Dockerfile ignore file keeps .venv, build/ and plans out of the context.
    assert (REPO_ROOT / f"{build['dockerfile']}.dockerignore").is_file()
    assert not service["image"].startswith("nvcr.io/"), "a built image must not shadow an NGC tag"


@pytest.mark.parametrize("profile", PROFILES)
def test_nothing_is_installed_at_container_start(services, profile):
    service = services[profile]
    started = words(service.get("entrypoint")) + words(service.get("command"))
    assert not any("pip" in word for word in started), started
    if "build" in service:
        text = dockerfile(service)
        for keyword in ("CMD", "ENTRYPOINT"):
            for instruction in instructions(text, keyword):
                assert "pip" not in instruction, instruction


@pytest.mark.parametrize("profile", ["t4", "jetson"])
def test_server_image_installs_the_python_models_imports(services, profile):
    service = services[profile]
    assert service["build"]["dockerfile"] == "deploy/triton.Dockerfile"
    assert service["build"]["args"]["BASE_IMAGE"] == SERVER_IMAGES[profile]
    text = dockerfile(service)
    assert f"ARG BASE_IMAGE={SERVER_IMAGES['t4']}" in text
    assert "FROM ${BASE_IMAGE}" in text
    runs = " ".join(instructions(text, "RUN"))
    # Into the image's python3, which the python backend stub runs.
    assert 'python3 -m pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch' in runs
    assert 'python3 -m pip install --no-cache-dir "/opt/rfdetr-triton[export]"' in runs
    # Jetson's torch comes from NVIDIA's JetPack index: PyPI's aarch64 wheel has no CUDA for it.
    assert ("TORCH_INDEX_URL" in service["build"]["args"]) == (profile == "jetson")
    copies = instructions(text, "COPY")
    assert any(c.startswith("pyproject.toml ") for c in copies)
    assert any(c.startswith("backends/ ") for c in copies)


@pytest.mark.parametrize("profile", ["t4", "jetson"])
def test_server_settings(services, profile):
    service = services[profile]
    assert service["ipc"] == "host"  # client system shared memory
    assert service["shm_size"] == "2gb"
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(service["ports"])
    assert service["volumes"] == [f"{REPOSITORY_MOUNT}:ro"]  # models only, read-only
    assert words(service["command"]) == ["tritonserver", "--model-repository=/models"]
    assert "triton" in service["networks"]["default"]["aliases"]


def test_t4_gets_a_gpu_and_the_host_pid_namespace(services):
    t4 = services["t4"]
    assert t4["pid"] == "host"  # client CUDA shared memory across containers
    (device,) = t4["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "runtime" not in t4


def test_jetson_uses_the_nvidia_runtime(services):
    jetson = services["jetson"]
    assert jetson["runtime"] == "nvidia"
    assert "deploy" not in jetson and "pid" not in jetson  # no CUDA IPC on Jetson


def test_engine_builder_runs_build_engines_with_a_target(services):
    builder = services["build"]
    started = words(builder["entrypoint"]) + words(builder["command"])
    assert started[0] == "./build_engines.sh"
    assert started[started.index("--target") + 1] in ("gpu", "jetson")
    # The checkout mounted at the working directory: build/ is written into it.
    assert f".:{builder['working_dir']}" in builder["volumes"]
    (device,) = builder["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]  # trtexec builds on the GPU that serves
    text = dockerfile(builder)
    assert instructions(text, "FROM") == ["nvcr.io/nvidia/tensorrt:24.10-py3"]
    (path,) = instructions(text, "ENV")
    assert "/opt/tensorrt/bin" in path and "/usr/src/tensorrt/bin" in path
    assert '"/opt/rfdetr-triton[export]"' in " ".join(instructions(text, "RUN"))


def test_client_streams_to_the_server(services):
    client = services["client"]
    started = words(client["entrypoint"]) + words(client["command"])
    assert started[:3] == ["python", "-m", "clients.stream_video"]
    # In the entrypoint, so that `run client --video ...` keeps the server's address.
    assert f"--url={SERVER_URL}" in words(client["entrypoint"])
    assert "--transport=system_shm" in started
    assert client["ipc"] == "host" and client["pid"] == "host"
    text = dockerfile(client)
    assert instructions(text, "FROM") == ["python:3.11-slim"]
    runs = " ".join(instructions(text, "RUN"))
    for requirement in ("tritonclient[grpc]==2.51.0", "numpy", "opencv-python-headless",
                        "pycocotools", "tqdm"):
        assert requirement in runs, requirement
    installs = [run for run in instructions(text, "RUN") if "pip install" in run]
    assert installs and not any("torch" in run for run in installs)  # clients need no torch


def test_perf_analyzer_drives_the_ensemble_through_system_shm(services):
    perf = services["perf"]
    started = words(perf["entrypoint"]) + words(perf["command"])
    assert started[0] == "perf_analyzer"
    option = {flag: started[i + 1] for i, flag in enumerate(started[:-1]) if flag.startswith("-")}
    assert option["-m"] == "rfdetr_seg" and option["-u"] == SERVER_URL and option["-i"] == "grpc"
    assert option["--shape"] == "image:1,1080,1920,3"
    assert option["--shared-memory"] == "system"
    assert perf["ipc"] == "host"


@pytest.mark.parametrize("profile", PROFILES)
def test_docker_compose_validates_the_file(profile):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "--profile", profile, "config", "-q"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
