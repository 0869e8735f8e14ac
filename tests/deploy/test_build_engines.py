"""build_engines.sh run for real, with a FAKE trtexec (TensorRT cannot be installed here).

The fake records the arguments it was given and writes a dummy plan where --saveEngine says, so
everything around trtexec is real: argument checks, the shapes read from backends.contract,
the ONNX reuse, and tools.build_repository rendering the tensorrt variant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from backends.contract import ENGINE, JPEG_ENSEMBLE, MODEL_SIZES, PREPROCESS
from tools.tritonserver import REPO_ROOT

SCRIPT = REPO_ROOT / "build_engines.sh"
SHELL_TOOLS = ("bash", "sed", "mkdir", "rm")  # what the script runs besides python and trtexec
FAKE_PLAN_BYTES = b"FAKE TensorRT plan written by tests/deploy/test_build_engines.py"
FAKE_TRTEXEC = """#!{python}
# FAKE trtexec for tests/deploy/test_build_engines.py: records each argv; a build writes a dummy
# plan, a run (--loadEngine) answers with ONNX Runtime's outputs of $FAKE_TRTEXEC_ONNX, plus
# $FAKE_TRTEXEC_LOGIT_SHIFT on the class logits (a plan that changes detections). Builds nothing.
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with Path(__file__).with_name("fake_trtexec_calls.jsonl").open("a") as calls:
    calls.write(json.dumps(args) + "\\n")
options = dict((arg.split("=", 1) + [""])[:2] for arg in args)
if "--saveEngine" in options:
    Path(options["--saveEngine"]).write_bytes({plan!r})
    sys.exit(0)
import numpy as np
from backends.engine_onnx import OnnxEngine

name, shape = options["--shapes"].split(":")
batch = np.fromfile(options["--loadInputs"].split(":", 1)[1], np.float32).reshape([int(d) for d in shape.split("x")])
outputs = OnnxEngine(os.environ["FAKE_TRTEXEC_ONNX"])(batch)
outputs["labels"] = outputs["labels"] + float(os.environ.get("FAKE_TRTEXEC_LOGIT_SHIFT", "0"))
records = [
    {{"name": k, "dimensions": "x".join(map(str, v.shape)), "values": v.ravel().tolist()}} for k, v in outputs.items()
]
Path(options["--exportOutput"]).write_text(json.dumps(records))
"""


@dataclass
class FakeTrtexec:
    bin_dir: Path
    path: str  # a PATH with the fake first

    def calls(self) -> list[list[str]] | None:
        """Every call's argv, in order, or None when it was never called."""
        record = self.bin_dir / "fake_trtexec_calls.jsonl"
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else None

    def options(self, call: int = 0) -> dict[str, str]:
        """A call's --key=value arguments as {key: value}; bare flags map to ""."""
        return dict((arg.split("=", 1) + [""])[:2] for arg in self.calls()[call])


@pytest.fixture(scope="module")
def base_path(tmp_path_factory) -> str:
    """A PATH with the project's Python and the script's shell tools only: no trtexec, even on
    a host where TensorRT is installed."""
    tools = tmp_path_factory.mktemp("tools-bin")
    for tool in SHELL_TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    return os.pathsep.join([str(Path(sys.executable).parent), str(tools)])


@pytest.fixture
def fake_trtexec(tmp_path: Path, base_path: str) -> FakeTrtexec:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "trtexec"  # the name build_engines.sh looks up on PATH
    script.write_text(FAKE_TRTEXEC.format(python=sys.executable, plan=FAKE_PLAN_BYTES))
    script.chmod(0o755)
    return FakeTrtexec(bin_dir, os.pathsep.join([str(bin_dir), base_path]))


def run_script(*args: str, path: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "extra_args, precision, opt_batch, max_batch",
    [
        ((), "fp16", 8, 32),  # the defaults
        (("--precision", "fp32", "--max-batch", "4"), "fp32", 4, 4),  # opt follows a smaller max
        (("--max-batch", "16", "--opt-batch", "2"), "fp16", 2, 16),
        (("--target", "jetson", "--max-batch", "8"), "fp16", 8, 8),
        (("--jpeg",), "fp16", 8, 32),  # the JPEG ensemble beside the raw one
    ],
)
def test_builds_plan_and_tensorrt_repository(
    nano_export, fake_trtexec, tmp_path, monkeypatch, extra_args, precision, opt_batch, max_batch
):
    onnx_path, classes_path = nano_export.onnx, nano_export.classes
    monkeypatch.setenv("FAKE_TRTEXEC_ONNX", str(onnx_path))
    out, repository = tmp_path / "engines", tmp_path / "repository"
    result = run_script(
        "--onnx", str(onnx_path), "--out", str(out), "--repository", str(repository), *extra_args,
        path=fake_trtexec.path,
    )
    assert result.returncode == 0, result.stderr

    plan = out / f"rfdetr-seg-nano-{precision}.plan"
    size = MODEL_SIZES["nano"]
    r, q, m = size.resolution, size.num_queries, size.mask_size
    options = fake_trtexec.options()
    assert options["--onnx"] == str(onnx_path)
    assert options["--saveEngine"] == str(plan)
    assert options["--minShapes"] == f"input:1x3x{r}x{r}"
    assert options["--optShapes"] == f"input:{opt_batch}x3x{r}x{r}"
    assert options["--maxShapes"] == f"input:{max_batch}x3x{r}x{r}"
    assert ("--fp16" in options) == (precision == "fp16")
    assert options["--timingCacheFile"] == str(out / "timing.cache")
    # Then the plan is checked against the ONNX on 4 frames before the repository is written.
    check = fake_trtexec.options(call=1)
    assert check["--loadEngine"] == str(plan) and check["--shapes"] == f"input:4x3x{r}x{r}"
    assert "largest |difference|: dets 0, labels 0, masks 0" in result.stdout

    engine_dir = repository / ENGINE
    assert (engine_dir / "1" / "model.plan").read_bytes() == FAKE_PLAN_BYTES
    assert not (engine_dir / "1" / "model.onnx").exists()
    config = text_format.Parse((engine_dir / "config.pbtxt").read_text(), ModelConfig())
    preprocess = text_format.Parse((repository / PREPROCESS / "config.pbtxt").read_text(), ModelConfig())
    # Jetson's python backend takes no GPU tensors: its python stages keep CPU tensors.
    gpu_tensors = "no" if "jetson" not in extra_args else "yes"
    assert preprocess.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == gpu_tensors
    assert (repository / JPEG_ENSEMBLE / "config.pbtxt").is_file() == ("--jpeg" in extra_args)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == max_batch
    assert list(config.input[0].dims) == [3, r, r]
    num_classes = len(json.loads(classes_path.read_text()))
    assert {o.name: list(o.dims) for o in config.output} == {
        "dets": [q, 4],
        "labels": [q, num_classes],
        "masks": [q, m, m],
    }


def test_missing_trtexec_fails_before_export(tmp_path, base_path):
    assert shutil.which("trtexec", path=base_path) is None
    result = run_script("--out", str(tmp_path / "engines"), path=base_path)
    assert result.returncode != 0
    assert "trtexec not found" in result.stderr
    assert not (tmp_path / "engines").exists()  # no export was started


@pytest.mark.parametrize(
    "args, message",
    [
        (("--size", "huge"), "unknown --size 'huge'; choose one of nano, small"),
        (("--precision", "int8"), "--precision must be fp16 or fp32"),
        (("--target", "cpu"), "--target must be gpu or jetson, got 'cpu'"),
        (("--max-batch", "0"), "--max-batch must be a positive integer"),
        (("--opt-batch", "64"), "--opt-batch (64) must not exceed --max-batch (32)"),
        (("--onnx", "a.onnx", "--checkpoint", "a.pth"), "not both"),
        (("--onnx", "no/such.onnx"), "--onnx file not found: no/such.onnx"),
        (("--frobnicate",), "unknown argument: --frobnicate"),
    ],
)
def test_bad_arguments_fail_clearly(fake_trtexec, tmp_path, args, message):
    result = run_script("--out", str(tmp_path / "engines"), *args, path=fake_trtexec.path)
    assert result.returncode != 0
    assert message in result.stderr
    assert fake_trtexec.calls() is None


def test_onnx_without_class_table(fake_trtexec, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"not used")
    result = run_script(
        "--onnx", str(onnx_path), "--out", str(tmp_path / "engines"), path=fake_trtexec.path
    )
    assert result.returncode != 0
    assert f"expected {tmp_path / 'model.classes.json'}" in result.stderr


def test_checkpoint_reaches_the_export_tool(fake_trtexec, tmp_path):
    # The export runs (tools.export_onnx), and its own check names the missing checkpoint.
    missing = tmp_path / "rf-detr-seg-nano.pth"
    out = tmp_path / "engines"
    result = run_script("--checkpoint", str(missing), "--out", str(out), path=fake_trtexec.path)
    assert result.returncode != 0
    assert f"checkpoint not found: {missing}" in result.stderr
    assert fake_trtexec.calls() is None


def test_must_run_from_repository_root(fake_trtexec, tmp_path):
    result = run_script(path=fake_trtexec.path, cwd=tmp_path)
    assert result.returncode != 0
    assert "run me from the repository root" in result.stderr


def test_a_plan_that_changes_detections_is_refused(nano_export, fake_trtexec, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TRTEXEC_ONNX", str(nano_export.onnx))
    monkeypatch.setenv("FAKE_TRTEXEC_LOGIT_SHIFT", "8")  # every score jumps over the threshold
    repository = tmp_path / "repository"
    result = run_script(
        "--onnx", str(nano_export.onnx), "--out", str(tmp_path / "engines"), "--repository", str(repository),
        path=fake_trtexec.path,
    )
    assert result.returncode != 0
    assert "the fp16 plan changes detections against the ONNX" in result.stderr
    assert "unexplained" in result.stdout
    assert not repository.exists()
