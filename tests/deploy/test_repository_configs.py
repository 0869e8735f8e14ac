"""Every target's rendered repository, parsed as Triton's ModelConfig protobuf, checked against
the contract.

Parsing with text_format rejects bad syntax and unknown field names, as tritonserver would. On
top of that: every config's tensors are backends.contract's (names, dtypes, dims), the engine
variants are interchangeable, the ensemble's maps name tensors the composing models really have,
and each target's table (tools.targets) reaches the configs. No engine is run: a few-byte file
is enough to render configs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import DataType, ModelConfig, ModelInstanceGroup

from backends import contract
from backends.batch_buckets import bucket_sizes
from backends.contract import (
    ENGINE,
    ENSEMBLE,
    JPEG_ENSEMBLE,
    MODEL_SIZES,
    POSTPROCESS,
    PREPROCESS,
    PREPROCESS_JPEG,
    EngineShape,
)
from backends.engine_compiled import COMPILE_CACHE_FILE
from tests.repositories import config_spec
from tools.build_repository import (
    build_repository,
    precompile_torch_engine,
    render_repository,
    repository_target,
    spec_from_files,
)
from tools.targets import TARGETS

COMBINATIONS = [(t, e, s) for t in TARGETS for e in TARGETS[t].engines for s in MODEL_SIZES]


def load_repository(root: Path) -> dict[str, ModelConfig]:
    """{model name: parsed config} for every model folder; the name inside must match the folder."""
    configs = {}
    for path in sorted(root.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), ModelConfig())
        assert config.name == path.parent.name, f"{path}: name {config.name!r} != folder"
        configs[config.name] = config
    return configs


@pytest.fixture(scope="module")
def repositories(tmp_path_factory) -> dict[tuple[str, str, str], dict[str, ModelConfig]]:
    """{(target, engine, size): configs} for every target, each engine it serves, every size."""
    work = tmp_path_factory.mktemp("configs")
    built = {}
    for target, engine, size in COMBINATIONS:
        spec = config_spec(target, engine, work, size)
        built[target, engine, size] = load_repository(render_repository(spec, work / f"{target}-{engine}-{size}"))
    return built


def declared(tensors) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (DataType.Name(t.data_type).removeprefix("TYPE_"), list(t.dims)) for t in tensors}


def contract_tensors(specs, shape: EngineShape) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (t.dtype, list(t.resolve(shape))) for t in specs}


@pytest.mark.parametrize("target, engine, size", COMBINATIONS)
def test_every_config_declares_the_contract_tensors(repositories, target, engine, size):
    configs = repositories[target, engine, size]
    assert set(configs) == set(contract.STAGE_TENSORS)
    for model, (inputs, outputs) in contract.STAGE_TENSORS.items():
        assert declared(configs[model].input) == contract_tensors(inputs, MODEL_SIZES[size]), model
        assert declared(configs[model].output) == contract_tensors(outputs, MODEL_SIZES[size]), model


def full_shape(config: ModelConfig, tensor) -> list[int]:
    """The shape a request carries: the batch axis (-1) first when the model batches."""
    return ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)


def shapes_agree(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("target, engine, size", COMBINATIONS)
def test_ensemble_maps_name_real_tensors(repositories, target, engine, size):
    check_ensemble_maps(repositories[target, engine, size], ENSEMBLE)


def check_ensemble_maps(configs: dict[str, ModelConfig], name: str) -> None:
    """Every step of ensemble `name` reads tensors produced before it, as their dtype and shape."""
    ensemble = configs[name]
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 0
    available = {t.name: (t.data_type, full_shape(ensemble, t)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {t.name: t for t in model.input}
        outputs = {t.name: t for t in model.output}
        assert set(step.input_map) == set(inputs), f"{model.name}: every input mapped, none invented"
        for own, wide in step.input_map.items():
            assert wide in available, f"{model.name} reads {wide!r} before any step produces it"
            dtype, shape = available[wide]
            assert dtype == inputs[own].data_type, f"{model.name}.{own}: dtype differs from {wide}"
            assert shapes_agree(shape, full_shape(model, inputs[own])), f"{model.name}.{own} vs {wide}"
        for own, wide in step.output_map.items():
            assert own in outputs, f"{model.name} has no output {own!r}"
            assert wide not in available, f"{wide!r} produced twice"
            available[wide] = (outputs[own].data_type, full_shape(model, outputs[own]))
    for output in ensemble.output:
        assert output.name in available, f"ensemble output {output.name!r} is never produced"
        dtype, shape = available[output.name]
        assert dtype == output.data_type and shapes_agree(shape, full_shape(ensemble, output)), output.name


def parameters(config: ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("target, engine, size", COMBINATIONS)
def test_the_target_table_reaches_the_configs(repositories, target, engine, size):
    configs = repositories[target, engine, size]
    plan = TARGETS[target]
    python_kind = ModelInstanceGroup.KIND_GPU if plan.gpu_tensors else ModelInstanceGroup.KIND_CPU
    for model, stage, impl in (
        (PREPROCESS, plan.preprocess, plan.preprocess_impl),
        (POSTPROCESS, plan.postprocess, plan.postprocess_impl),
    ):
        config = configs[model]
        assert config.max_batch_size == stage.max_batch_size
        assert config.dynamic_batching.max_queue_delay_microseconds == stage.queue_delay_us
        assert [(g.kind, g.count) for g in config.instance_group] == [(python_kind, stage.instance_count)]
        params = parameters(config)
        assert params["impl"] == impl and params["device"] == plan.device
        assert model != POSTPROCESS or params["polygons"] == "yes"
        assert params["FORCE_CPU_ONLY_INPUT_TENSORS"] == ("no" if plan.gpu_tensors else "yes")
    assert all(t.allow_ragged_batch for t in configs[PREPROCESS].input)
    engine_config = configs[ENGINE]
    assert engine_config.max_batch_size == plan.engine.max_batch_size
    assert engine_config.HasField("dynamic_batching")
    expected_kind = ModelInstanceGroup.KIND_GPU if engine == "tensorrt" else python_kind
    assert [g.kind for g in engine_config.instance_group] == [expected_kind]
    if engine == "tensorrt":
        assert engine_config.platform == "tensorrt_plan" and not engine_config.backend
        assert engine_config.optimization.cuda.graphs
        assert [w.batch_size for w in engine_config.model_warmup] == [1]
    else:
        assert engine_config.backend == "python"
    if engine in ("tensorrt", "torch"):
        # The graph-replaying engines' buckets, past 1, are the batcher's preferred sizes.
        preferred = tuple(engine_config.dynamic_batching.preferred_batch_size)
        assert preferred == bucket_sizes(engine_config.max_batch_size)[1:]
    if engine == "torch":
        assert parameters(engine_config)["size"] == size
        assert parameters(engine_config)["device"] == plan.device


@pytest.mark.parametrize("target", list(TARGETS))
def test_engine_variants_of_a_target_are_interchangeable(repositories, target):
    engines = TARGETS[target].engines
    for size in MODEL_SIZES:
        first = repositories[target, engines[0], size]
        for engine in engines[1:]:
            other = repositories[target, engine, size]
            assert declared(first[ENGINE].output) == declared(other[ENGINE].output)
            for name in (ENSEMBLE, PREPROCESS, POSTPROCESS):
                assert first[name] == other[name], f"{target}: {name} differs between {engines[0]} and {engine}"


def test_shapes_come_from_the_onnx_file(nano_export, tmp_path):
    """A checkpoint can change the query or class count: the configs follow the file."""
    from tools.build_repository import engine_shape_from_onnx, main

    assert engine_shape_from_onnx(nano_export.onnx) == EngineShape(312, 100, 91)
    assert main(["--onnx", str(nano_export.onnx), "--out", str(tmp_path / "r")]) == 0
    engine = load_repository(tmp_path / "r")[ENGINE]
    assert declared(engine.output) == {
        "dets": ("FP32", [100, 4]),
        "labels": ("FP32", [100, 91]),
        "masks": ("FP32", [100, 78, 78]),
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--score-threshold", "nan"], "score threshold must be a number in \\[0, 1\\], got nan"),
        (["--score-threshold", "1.5"], "got 1.5"),
        (["--num-select", "0"], "num_select must be an integer >= 1, got 0"),
        (["--max-batch-size", "0"], "max batch size must be an integer >= 1, got 0"),
        (["--engine-instances", "0"], "engine instance count must be an integer >= 1, got 0"),
        (["--target", "tpu"], "unknown target 'tpu'"),
        (["--engine", "tensorrt"], "target cpu serves the engines \\['onnx', 'torch'\\], not 'tensorrt'"),
        (["--target", "gpu", "--engine", "tensorrt"], "needs its plan file"),
        (["--engine", "torch", "--weights", "/no/such.pth"], "torch engine file not found: /no/such.pth"),
        (["--classes", "/no/classes.json"], "class table not found: /no/classes.json"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(nano_export, tmp_path, capsys, argv, message):
    from tools.build_repository import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--onnx", str(nano_export.onnx), "--out", str(tmp_path / "r"), *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_a_missing_onnx_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX file not found: .*nothing.onnx"):
        spec_from_files("cpu", None, tmp_path / "nothing.onnx", 0.5)


@pytest.mark.parametrize("target", list(TARGETS))
def test_reference_stages_replace_the_kernels(tmp_path, target):
    spec = config_spec(target, TARGETS[target].engines[0], tmp_path, reference_stages=True)
    configs = load_repository(render_repository(spec, tmp_path / "r"))
    assert parameters(configs[PREPROCESS])["impl"] == parameters(configs[POSTPROCESS])["impl"] == "reference"


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_jpeg_ensemble_is_built_on_request_beside_the_raw_one(tmp_path, target):
    plan = TARGETS[target]
    spec = config_spec(target, plan.engines[0], tmp_path, "small", jpeg=True)
    configs = load_repository(render_repository(spec, tmp_path / "r"))
    tensors = {**contract.STAGE_TENSORS, **contract.JPEG_STAGE_TENSORS}
    assert set(configs) == set(tensors)
    for model, (inputs, outputs) in tensors.items():
        assert declared(configs[model].input) == contract_tensors(inputs, MODEL_SIZES["small"]), model
        assert declared(configs[model].output) == contract_tensors(outputs, MODEL_SIZES["small"]), model
    check_ensemble_maps(configs, JPEG_ENSEMBLE)
    check_ensemble_maps(configs, ENSEMBLE)
    steps = [s.model_name for s in configs[JPEG_ENSEMBLE].ensemble_scheduling.step]
    assert steps == [PREPROCESS_JPEG, ENGINE, POSTPROCESS]  # the engine and postprocess are shared
    raw, jpeg = configs[PREPROCESS], configs[PREPROCESS_JPEG]
    assert parameters(jpeg) == {**parameters(raw), "decoder": plan.jpeg_decoder}
    assert jpeg.instance_group == raw.instance_group and jpeg.max_batch_size == raw.max_batch_size
    assert jpeg.dynamic_batching == raw.dynamic_batching
    assert all(t.allow_ragged_batch for t in jpeg.input)
    without = load_repository(render_repository(config_spec(target, plan.engines[0], tmp_path), tmp_path / "raw"))
    assert set(without) == set(contract.STAGE_TENSORS)  # only on request: each instance is a process


def test_the_jpeg_ensemble_is_a_build_option(nano_export, tmp_path):
    from tools.build_repository import main

    assert main(["--onnx", str(nano_export.onnx), "--jpeg", "--out", str(tmp_path / "r")]) == 0
    assert parameters(load_repository(tmp_path / "r")[PREPROCESS_JPEG])["decoder"] == "opencv"


def test_polygons_can_be_switched_off_per_deployment(nano_export, tmp_path):
    from tools.build_repository import main

    assert main(["--onnx", str(nano_export.onnx), "--no-polygons", "--out", str(tmp_path / "r")]) == 0
    assert parameters(load_repository(tmp_path / "r")[POSTPROCESS])["polygons"] == "no"


def test_the_engine_instance_count_can_be_chosen_per_deployment(nano_export, tmp_path):
    from tools.build_repository import main

    assert main(["--onnx", str(nano_export.onnx), "--engine-instances", "2", "--out", str(tmp_path / "r")]) == 0
    configs = load_repository(tmp_path / "r")
    assert [g.count for g in configs[ENGINE].instance_group] == [2]
    default = load_repository(render_repository(config_spec("cpu", "onnx", tmp_path), tmp_path / "default"))
    for stage in (PREPROCESS, POSTPROCESS):  # the other stages keep the target's counts
        assert configs[stage].instance_group == default[stage].instance_group


def test_a_gpu_torch_engine_is_left_to_the_server_to_compile_on_a_host_without_gpu(nano_export, tmp_path):
    """tools.build_repository compiles the torch engine's buckets into a cache beside its weights
    only where a GPU is (measured on an H200 in benchmarks/results/h200/engine.md); here it
    leaves the repository as rendered, and the server compiles at load."""
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU: the build compiles (tests/backends/test_engine_compiled.py)")
    spec = spec_from_files("gpu", "torch", nano_export.onnx, 0.5)
    repository = build_repository(spec, tmp_path / "gpu")
    assert precompile_torch_engine(spec, repository) is None
    assert not (repository / ENGINE / "1" / COMPILE_CACHE_FILE).exists()
    assert (repository / ENGINE / "1" / "model.pth").is_file()


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_built_repository_tells_which_target_it_serves(tmp_path, target):
    """So that one served as it is gets its target's server options (the gpu CUDA pool)."""
    spec = config_spec(target, TARGETS[target].engines[0], tmp_path)
    assert repository_target(render_repository(spec, tmp_path / "repository")) is TARGETS[target]


def test_a_folder_no_build_wrote_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"cannot read {tmp_path}/rfdetr_seg_preprocess/config.pbtxt"):
        repository_target(tmp_path)
    (tmp_path / PREPROCESS).mkdir()
    (tmp_path / PREPROCESS / "config.pbtxt").write_text('parameters { key: "device" value: { string_value: "tpu" } }')
    with pytest.raises(ValueError, match="device 'tpu' with GPU tensors False is no target's"):
        repository_target(tmp_path)
