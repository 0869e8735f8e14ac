"""Every rendered config.pbtxt, parsed as Triton's ModelConfig protobuf, checked for consistency.

Parsing with text_format rejects bad syntax and unknown field names, as tritonserver would.
On top of that: the two engine variants are interchangeable, the ensemble's maps name tensors
the composing models really have (with matching dtypes and shapes), and the dims follow
backends.contract.MODEL_SIZES. No engine is run: a few-byte file is enough to render configs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import (
    ModelConfig,
    ModelInput,
    ModelInstanceGroup,
    ModelOutput,
)

from backends.classes import ClassTable
from backends.contract import ENGINE, ENSEMBLE, MODEL_SIZES, POSTPROCESS, PREPROCESS
from tools.build_repository import (
    ENGINE_VARIANTS,
    EngineShape,
    RepositorySettings,
    build_repository,
)

NUM_CLASSES = 91  # COCO-pretrained logit columns; any count renders the same way
MAX_BATCH_SIZE = 16
CLASSES = ClassTable(tuple(f"class_{i}" for i in range(NUM_CLASSES - 1)) + (None,))


def load_repository(root: Path) -> dict[str, ModelConfig]:
    """{model name: parsed config} for every model folder; the name inside must match the folder."""
    configs = {}
    for path in sorted(root.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), ModelConfig())
        assert config.name == path.parent.name, f"{path}: name {config.name!r} != folder"
        configs[config.name] = config
    return configs


@pytest.fixture(scope="module")
def repositories(tmp_path_factory) -> dict[tuple[str, str], dict[str, ModelConfig]]:
    """{(size, engine suffix): configs}: every size with each engine variant."""
    work = tmp_path_factory.mktemp("configs")
    built = {}
    for suffix in ENGINE_VARIANTS:
        engine_file = work / f"dummy-engine{suffix}"
        engine_file.write_bytes(b"dummy engine: configs only")
        for size in MODEL_SIZES:
            model = MODEL_SIZES[size]
            shape = EngineShape(model.resolution, model.num_queries, NUM_CLASSES)
            settings = RepositorySettings(shape, max_batch_size=MAX_BATCH_SIZE)
            out = work / f"{size}-{suffix.lstrip('.')}"
            root = build_repository(engine_file, CLASSES, settings, out)
            built[size, suffix] = load_repository(root)
    return built


def signature(tensors) -> list[tuple[str, int, list[int]]]:
    return sorted((t.name, t.data_type, list(t.dims)) for t in tensors)


def full_shape(config: ModelConfig, tensor: ModelInput | ModelOutput) -> list[int]:
    """The shape a request carries: the batch axis (-1) first when the model batches."""
    return ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)


def shapes_agree(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


def by_name(tensors) -> dict[str, ModelInput | ModelOutput]:
    return {t.name: t for t in tensors}


@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_every_config_parses_and_both_engines_are_interchangeable(repositories, size):
    onnxruntime, tensorrt = repositories[size, ".onnx"], repositories[size, ".plan"]
    assert set(onnxruntime) == set(tensorrt) == {ENSEMBLE, PREPROCESS, ENGINE, POSTPROCESS}
    a, b = onnxruntime[ENGINE], tensorrt[ENGINE]
    assert signature(a.input) == signature(b.input)
    assert signature(a.output) == signature(b.output)
    assert a.max_batch_size == b.max_batch_size == MAX_BATCH_SIZE
    # Everything but the engine is the same repository.
    for name in (ENSEMBLE, PREPROCESS, POSTPROCESS):
        assert onnxruntime[name] == tensorrt[name]


@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_tensorrt_variant_is_a_batched_gpu_plan(repositories, size):
    engine = repositories[size, ".plan"][ENGINE]
    assert engine.platform == "tensorrt_plan"
    assert not engine.backend
    assert engine.HasField("dynamic_batching")
    assert [g.kind for g in engine.instance_group] == [ModelInstanceGroup.KIND_GPU]


@pytest.mark.parametrize("suffix", list(ENGINE_VARIANTS))
@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_dims_follow_the_contract(repositories, size, suffix):
    configs = repositories[size, suffix]
    spec = MODEL_SIZES[size]
    r, q, m = spec.resolution, spec.num_queries, spec.mask_size
    assert m == r // 4
    engine = configs[ENGINE]
    assert {t.name: list(t.dims) for t in engine.input} == {"input": [3, r, r]}
    assert {t.name: list(t.dims) for t in engine.output} == {
        "dets": [q, 4],
        "labels": [q, NUM_CLASSES],
        "masks": [q, m, m],
    }
    # The ensemble sends one frame per request: unbatched stages see the engine's batch of 1.
    engine_outputs = by_name(engine.output)
    postprocess_inputs = by_name(configs[POSTPROCESS].input)
    for name, tensor in engine_outputs.items():
        assert list(postprocess_inputs[name].dims) == [1, *tensor.dims]
    assert list(by_name(configs[PREPROCESS].output)["input"].dims) == [1, *engine.input[0].dims]


@pytest.mark.parametrize("suffix", list(ENGINE_VARIANTS))
@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_ensemble_maps_name_real_tensors(repositories, size, suffix):
    configs = repositories[size, suffix]
    ensemble = configs[ENSEMBLE]
    assert ensemble.platform == "ensemble"
    # Ensemble-wide tensors: what the client sends, then what each step produces.
    available = {t.name: (t.data_type, full_shape(ensemble, t)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        name = step.model_name
        assert name in configs, f"step names unknown model {name}"
        model = configs[name]
        inputs, outputs = by_name(model.input), by_name(model.output)
        assert set(step.input_map) == set(inputs), f"{name}: every input mapped, none invented"
        for own, wide in step.input_map.items():
            assert wide in available, f"{name} reads {wide!r} before any step produces it"
            dtype, shape = available[wide]
            assert dtype == inputs[own].data_type, f"{name}.{own}: dtype differs from {wide}"
            takes = full_shape(model, inputs[own])
            assert shapes_agree(shape, takes), f"{name}.{own} takes {takes}, {wide} is {shape}"
        for own, wide in step.output_map.items():
            assert own in outputs, f"{name} has no output {own!r}"
            assert wide not in available, f"{wide!r} produced twice"
            available[wide] = (outputs[own].data_type, full_shape(model, outputs[own]))
    for output in ensemble.output:
        assert output.name in available, f"ensemble output {output.name!r} is never produced"
        dtype, shape = available[output.name]
        assert dtype == output.data_type, output.name
        assert shapes_agree(shape, full_shape(ensemble, output)), output.name


def test_shapes_come_from_the_onnx_file(nano_onnx, tmp_path):
    """A checkpoint can change the query or class count: the configs follow the file."""
    from tools.build_repository import main

    onnx_path, classes_path = nano_onnx
    assert EngineShape.from_onnx(onnx_path) == EngineShape(312, 100, 91)
    assert main(["--engine-file", str(onnx_path), "--classes", str(classes_path), "--out", str(tmp_path / "r")]) == 0
    engine = load_repository(tmp_path / "r")["rfdetr_seg_engine"]
    assert signature(engine.output) == signature(
        text_format.Parse(
            'output [{ name: "dets" data_type: TYPE_FP32 dims: [100, 4] },'
            ' { name: "labels" data_type: TYPE_FP32 dims: [100, 91] },'
            ' { name: "masks" data_type: TYPE_FP32 dims: [100, 78, 78] }]',
            ModelConfig(),
        ).output
    )


def test_a_plan_needs_the_onnx_it_was_built_from(tmp_path, nano_onnx, capsys):
    from tools.build_repository import main

    plan = tmp_path / "x.plan"
    plan.write_bytes(b"dummy engine: configs only")
    with pytest.raises(SystemExit):
        main(["--engine-file", str(plan), "--classes", str(nano_onnx[1]), "--out", str(tmp_path / "r")])
    assert "needs --onnx" in capsys.readouterr().err
