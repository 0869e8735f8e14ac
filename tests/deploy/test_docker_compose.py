"""docker-compose.yml: the t4 and jetson deployments carry the settings they depend on.

No Docker engine runs here: the structure is checked from the YAML, and the docker-compose CLI
validates the file when it is installed (it needs no engine for `config`).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tools.tritonserver import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REPOSITORY_MOUNT = "./build/model_repository:/models"


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


def test_both_deployments_use_the_triton_release_tested_here(services):
    assert set(services) == {"t4", "jetson"}
    assert services["t4"]["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert services["jetson"]["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3-igpu"


@pytest.mark.parametrize("profile", ["t4", "jetson"])
def test_server_settings(services, profile):
    service = services[profile]
    assert service["ipc"] == "host"  # client system shared memory
    assert service["shm_size"] == "2gb"
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(service["ports"])
    volumes = service["volumes"]
    assert any(v.startswith(REPOSITORY_MOUNT) for v in volumes), volumes
    assert any(v.startswith(".:") for v in volumes), "the project is mounted for the python backend"
    command = " ".join(service["command"])
    assert "pip install --no-cache-dir -e /opt/rfdetr-triton" in command
    assert "exec tritonserver --model-repository=/models" in command


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


@pytest.mark.parametrize("profile", ["t4", "jetson"])
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
