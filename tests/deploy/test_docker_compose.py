"""docker-compose.yml: the t4 and jetson deployments carry the settings they depend on (shared
memory, GPU, health checks on Triton's readiness, ports on localhost, no model-control API,
--allow-client-shm where the release needs it), every image installs at build time, and the
engine builder, clients and perf_analyzer services are wired to (and wait for) the server.

No Docker engine runs here: the structure is checked from the YAML and the Dockerfiles' text, the
docker-compose CLI validates the file when it is installed (it needs no engine for `config`), and
the parts that run inside the containers (the health check's command, start-tritonserver) are run
here against a real tritonserver. No image is built here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from tools.targets import TARGETS
from tools.tritonserver import DEFAULT_TRITON_HOME, REPO_ROOT, TritonServer

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
START_SCRIPT = REPO_ROOT / "deploy" / "start-tritonserver.sh"
REPOSITORY_MOUNT = "./build/model_repository:/models"
RELEASE = "${TRITON_RELEASE:-24.10}"
PROFILES = {  # service: its profile
    "triton-t4": "t4",
    "triton-jetson": "jetson",
    "engine-builder": "build",
    "client": "client",
    "client-jetson": "client-jetson",
    "perf-analyzer": "perf",
}
SERVER_OF = {"client": "triton-t4", "client-jetson": "triton-jetson", "perf-analyzer": "triton-t4"}
SERVER_IMAGES = {
    "t4": f"nvcr.io/nvidia/tritonserver:{RELEASE}-py3",
    "jetson": f"nvcr.io/nvidia/tritonserver:{RELEASE}-py3-igpu",
}
SDK_IMAGE = f"nvcr.io/nvidia/tritonserver:{RELEASE}-py3-sdk"
SERVER_URL = "${TRITON_URL:-triton:8001}"  # the server services' network alias, gRPC port
SERVER_COMMAND = ["start-tritonserver", "--model-repository=/models", "--model-control-mode=none"]


@pytest.fixture(scope="module")
def compose() -> dict:
    """The file as Compose reads it: YAML merge keys (<<) are resolved by the loader."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    """{profile: service}: each profile has exactly one service."""
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


def test_every_profile_has_its_service(compose):
    assert {name: s["profiles"] for name, s in compose["services"].items()} == {
        name: [profile] for name, profile in PROFILES.items()
    }


@pytest.mark.parametrize("profile", PROFILES.values())
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


@pytest.mark.parametrize("profile", PROFILES.values())
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
    tag = SERVER_IMAGES[profile].removeprefix("nvcr.io/nvidia/tritonserver:")
    assert service["image"] == f"rfdetr-triton/tritonserver:{tag}"
    text = dockerfile(service)
    assert "ARG BASE_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3" in text
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
    # Only this host reaches the ports, unless TRITON_BIND_ADDRESS says otherwise.
    assert service["ports"] == [
        f"${{TRITON_BIND_ADDRESS:-127.0.0.1}}:{port}:{port}" for port in (8000, 8001, 8002)
    ]
    assert service["volumes"] == [f"{REPOSITORY_MOUNT}:ro"]  # models only, read-only
    # No model-control API: the models load at start and nobody can load or unload one. Then
    # the options of the target the profile serves (t4: gpu, with its CUDA memory pool).
    target = TARGETS["gpu" if profile == "t4" else "jetson"]
    assert words(service["command"]) == SERVER_COMMAND + list(target.server_args())
    assert "triton" in service["networks"]["default"]["aliases"]
    health = service["healthcheck"]
    assert "http://localhost:8000/v2/health/ready" in " ".join(health["test"])
    assert health["start_period"] == "10m"  # loading the models takes minutes


def test_the_image_starts_the_server_as_compose_does(services):
    text = dockerfile(services["t4"])
    copies = instructions(text, "COPY")
    assert "deploy/start-tritonserver.sh /usr/local/bin/start-tritonserver" in copies
    (cmd,) = instructions(text, "CMD")
    assert yaml.safe_load(cmd) == SERVER_COMMAND
    assert os.access(START_SCRIPT, os.X_OK)


@pytest.mark.parametrize("dependent", SERVER_OF)
def test_clients_wait_for_a_healthy_server_and_say_which(compose, dependent):
    server = SERVER_OF[dependent]
    assert compose["services"][dependent]["depends_on"] == {
        server: {"condition": "service_healthy"}
    }
    # Compose starts the profiles of the service run, not those of its dependencies: the
    # documented command line names the server's profile.
    header = COMPOSE_FILE.read_text().split("\nx-triton:")[0]
    assert f"--profile {PROFILES[server]} run --rm {dependent}" in header


def test_every_ngc_image_follows_triton_release(compose):
    images = [s.get("image", "") for s in compose["services"].values()]
    images += [
        s["build"].get("args", {}).get("BASE_IMAGE", "")
        for s in compose["services"].values()
        if "build" in s
    ]
    ngc = [image for image in images if "nvcr.io" in image or image.startswith("rfdetr-triton/t")]
    assert ngc and all(RELEASE in image for image in ngc), ngc
    assert compose["services"]["engine-builder"]["build"]["args"]["BASE_IMAGE"] == (
        f"nvcr.io/nvidia/tensorrt:{RELEASE}-py3"
    )


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
    assert "ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3" in text
    assert instructions(text, "FROM") == ["${BASE_IMAGE}"]
    (path,) = instructions(text, "ENV")
    assert "/opt/tensorrt/bin" in path and "/usr/src/tensorrt/bin" in path
    assert '"/opt/rfdetr-triton[export]"' in " ".join(instructions(text, "RUN"))


@pytest.mark.parametrize("profile", ["client", "client-jetson"])
def test_client_streams_to_the_server(services, profile):
    client = services[profile]
    started = words(client["entrypoint"]) + words(client["command"])
    assert started[:4] == ["python", "-m", "clients", "stream"]
    # In the entrypoint, so that `run client --video ...` keeps the server's address.
    assert f"--url={SERVER_URL}" in words(client["entrypoint"])
    assert "--transport=system_shm" in started
    assert client["ipc"] == "host"
    text = dockerfile(client)
    assert instructions(text, "FROM") == ["python:3.11-slim"]
    runs = " ".join(instructions(text, "RUN"))
    for requirement in ("tritonclient[grpc]==2.51.0", "numpy", "opencv-python-headless",
                        "pycocotools", "tqdm", '"av>=12"', '"cuda-python>=12,<13"'):
        assert requirement in runs, requirement
    installs = [run for run in instructions(text, "RUN") if "pip install" in run]
    assert installs and not any("torch" in run for run in installs)  # clients need no torch
    assert instructions(text, "ENTRYPOINT") == ['["python", "-m", "clients"]']


def test_the_t4_client_can_use_cuda_shared_memory(services):
    """--transport cuda: the server's PID namespace (CUDA IPC handles), the GPU, cuda-python."""
    client = services["client"]
    assert client["pid"] == "host" and services["t4"]["pid"] == "host"
    (device,) = client["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    jetson = services["client-jetson"]
    assert "pid" not in jetson and "deploy" not in jetson  # no CUDA IPC on Jetson


def test_perf_analyzer_drives_the_ensemble_through_system_shm(services):
    perf = services["perf"]
    started = words(perf["entrypoint"]) + words(perf["command"])
    assert started[0] == "perf_analyzer"
    option = {flag: started[i + 1] for i, flag in enumerate(started[:-1]) if flag.startswith("-")}
    assert option["-m"] == "rfdetr_seg" and option["-u"] == SERVER_URL and option["-i"] == "grpc"
    assert option["--shape"] == "image:1,1080,1920,3"
    assert option["--shared-memory"] == "system"
    assert perf["ipc"] == "host"


def docker_compose(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "profiles",
    [[p] for p in PROFILES.values()] + [[PROFILES[SERVER_OF[d]], PROFILES[d]] for d in SERVER_OF],
)
def test_docker_compose_validates_the_file(profiles):
    result = docker_compose(*[f"--profile={p}" for p in profiles], "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "address", "release"),
    [
        ({}, "127.0.0.1", "24.10"),
        ({"TRITON_BIND_ADDRESS": "0.0.0.0", "TRITON_RELEASE": "26.05"}, "0.0.0.0", "26.05"),
    ],
)
def test_docker_compose_resolves_the_address_and_the_release(env, address, release, monkeypatch):
    for name in ("TRITON_BIND_ADDRESS", "TRITON_RELEASE"):  # unset: the defaults
        monkeypatch.delenv(name, raising=False)
    result = docker_compose("config", env=env)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["triton-t4"]["ports"] == [
        f"{address}:{port}:{port}/tcp" for port in (8000, 8001, 8002)
    ]
    assert resolved["triton-t4"]["build"]["args"]["BASE_IMAGE"] == (
        f"nvcr.io/nvidia/tritonserver:{release}-py3"
    )
    assert resolved["perf-analyzer"]["image"] == f"nvcr.io/nvidia/tritonserver:{release}-py3-sdk"


def test_the_start_script_passes_shellcheck():
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    result = subprocess.run([binary, str(START_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


FAKE_TRITONSERVER = """#!/bin/sh
# A fake tritonserver >= 2.69 (unit test only): its help lists --allow-client-shm; otherwise it
# prints its arguments, one a line.
if [ "$1" = --help ]; then
  echo "  --allow-client-shm <boolean>"
  exit 1
fi
printf '%s\\n' "$@"
"""


def install_fake(folder, name: str, script: str) -> None:
    """An executable `name` in folder (a fake, unit tests only)."""
    (folder / name).write_text(script)
    (folder / name).chmod(0o755)


def test_the_start_script_allows_client_shm_where_the_release_has_the_flag(tmp_path):
    install_fake(tmp_path, "tritonserver", FAKE_TRITONSERVER)
    argv = ["--model-repository=/models", "--log-info=a b"]
    result = subprocess.run(
        ["sh", str(START_SCRIPT), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [*argv, "--allow-client-shm=true"]


class ScriptStartedServer(TritonServer):
    """The real tritonserver (2.51), started through deploy/start-tritonserver.sh."""

    def command(self) -> list[str]:
        _binary, *argv = super().command()
        return ["sh", str(START_SCRIPT), *argv]


@pytest.mark.integration
def test_the_start_script_starts_a_release_without_the_flag(tmp_path, monkeypatch):
    """2.51 has no --allow-client-shm and would refuse it: the server must start and serve
    shared memory without it."""
    binary_dir = DEFAULT_TRITON_HOME / "bin"
    monkeypatch.setenv("PATH", f"{binary_dir}{os.pathsep}{os.environ['PATH']}")
    models = tmp_path / "models"
    models.mkdir()
    server = ScriptStartedServer(models, tmp_path / "tritonserver.log", ready_timeout_s=60)
    with server:
        assert "--allow-client-shm" not in server.log_path.read_text()
        result = subprocess.run(
            [sys.executable, "-m", "clients", "check", "--url", server.grpc_url],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.stdout.startswith("Triton 2.51.0 at "), result.stdout + result.stderr


def healthcheck_command(compose: dict, http_port: int) -> list[str]:
    """The server services' health check, as Docker would exec it, aimed at `http_port`."""
    kind, *argv = compose["services"]["triton-t4"]["healthcheck"]["test"]
    assert kind == "CMD"
    assert argv[0] == "python3"
    aimed = (a.replace("localhost:8000", f"localhost:{http_port}") for a in argv[1:])
    return [sys.executable, *aimed]


@pytest.mark.integration
def test_the_health_check_passes_on_a_ready_server_and_fails_without_one(compose, triton_server):
    ready = subprocess.run(healthcheck_command(compose, triton_server.http_port), timeout=30)
    assert ready.returncode == 0
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("localhost", 0))
        closed = sock.getsockname()[1]
    gone = subprocess.run(healthcheck_command(compose, closed), capture_output=True, timeout=30)
    assert gone.returncode != 0



FAKE_MPS_CONTROL = """#!/bin/sh
# A fake nvidia-cuda-mps-control (unit test only): records its arguments and pipe folder.
echo "mps $* pipe=$CUDA_MPS_PIPE_DIRECTORY"
"""


@pytest.mark.parametrize("has_mps", [True, False])
def test_the_start_script_starts_the_servers_own_mps_daemon(tmp_path, has_mps):
    install_fake(tmp_path, "tritonserver", FAKE_TRITONSERVER + 'echo "server pipe=${CUDA_MPS_PIPE_DIRECTORY:-}"\n')
    if has_mps:
        install_fake(tmp_path, "nvidia-cuda-mps-control", FAKE_MPS_CONTROL)
    result = subprocess.run(
        ["sh", str(START_SCRIPT), "--model-repository=/models"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin", "RFDETR_CUDA_MPS": "1"},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if has_mps:
        assert lines[0] == "mps -d pipe=/tmp/rfdetr-cuda-mps/pipe"
        assert lines[-1] == "server pipe=/tmp/rfdetr-cuda-mps/pipe"
    else:
        assert "nvidia-cuda-mps-control is not found: serving without CUDA MPS" in result.stderr
        assert lines[-1] == "server pipe="
    assert "--model-repository=/models" in lines


def test_t4_runs_under_mps_as_the_gpu_target_does(services):
    assert TARGETS["gpu"].cuda_mps and not TARGETS["jetson"].cuda_mps
    assert services["t4"]["environment"]["RFDETR_CUDA_MPS"] == "1"
    assert "utility" in services["t4"]["environment"]["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "RFDETR_CUDA_MPS" not in services["jetson"].get("environment", {})
