"""Builds a servable Triton model repository for one target and one engine.

    python -m tools.build_repository --target cpu|gpu|jetson --engine onnx|torch|tensorrt \
        --onnx build/engines/random/rfdetr-seg-nano.onnx [--plan X.plan] [--weights X.pth] \
        [--score-threshold 0.5] [--jpeg] [--out build/model_repository]

The target (tools.targets) decides instance kinds and counts, each python stage's `impl`,
whether python models take GPU tensors, batch sizes and queue delays. The engine variant is
`onnx` (ONNX Runtime in the python backend, CPU), `torch` (rfdetr's model in PyTorch in the
python backend, the checkpoint --weights: FP16 CUDA graphs on a GPU, compiled here when this host
has one; eager fp32 on the CPU) or `tensorrt` (a plan, platform tensorrt_plan). All
expose the same model name and tensors. Tensor sizes are read from the exported ONNX, which
every engine comes from (a checkpoint may change the query or class count); the class table
and the weights default to the files tools.export_onnx writes beside it. Every setting is
checked here, before any server starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from backends.batch_buckets import bucket_sizes
from backends.classes import ClassTable
from backends.contract import (
    CLASSES_FILE,
    ENGINE,
    ENSEMBLE,
    ENSEMBLE_INPUTS,
    JPEG_ENSEMBLE,
    JPEG_ENSEMBLE_INPUTS,
    MODEL_SIZES,
    POSTPROCESS,
    PREPROCESS,
    PREPROCESS_JPEG,
    EngineShape,
    TensorSpec,
)
from backends.postprocess_settings import PostprocessSettings
from tools.targets import ENGINES, TARGETS, StagePlan, Target, get_target

SOURCE = Path(__file__).resolve().parent.parent / "model_repository"
# engine -> (its folder under model_repository/rfdetr_seg_engine, its file in version 1, suffix)
ENGINE_VARIANTS = {
    "onnx": ("onnxruntime", "model.onnx", ".onnx"),
    "torch": ("torch", "model.pth", ".pth"),
    "tensorrt": ("tensorrt", "model.plan", ".plan"),
}


def engine_shape_from_onnx(path: Path) -> EngineShape:
    """The exported file's own sizes (backends.engine_onnx.OnnxEngine.shape)."""
    from backends.engine_onnx import OnnxEngine

    return OnnxEngine(path).shape


def size_of(shape: EngineShape) -> str:
    """The rfdetr size whose input resolution the engine has (the torch engine builds it)."""
    for name, size in MODEL_SIZES.items():
        if size.resolution == shape.resolution:
            return name
    raise ValueError(f"no RF-DETR-Seg size has resolution {shape.resolution}")


def check_readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} is not readable: {path}")


def check_positive(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class RepositorySpec:
    """Everything a repository is rendered from; checked on construction.

    Args:
        target: where and how stages run.
        engine: one of tools.targets.ENGINES, allowed by the target.
        engine_file: what the engine loads: .onnx (onnx), checkpoint .pth (torch), .plan (tensorrt).
        shape: the engine's tensor sizes.
        postprocess: top-k size, score threshold and class table.
        max_batch_size: overrides the target's, for every stage.
        queue_delay_us: overrides the target's, for every stage (tests use a long one).
        reference_stages: python stages run the reference torch ops instead of the target's
            kernels: the baseline kernels are measured against, and a fallback while debugging.
        engine_instances: overrides the target's engine instance count. On an H200 two served
            the ensemble over CUDA shm 11-20 % more than one at concurrency 16 and 32, and about
            5 % less over system shm and plain gRPC
            (benchmarks/results/h200/perf-analyzer/two-engine-instances-registered/).
        jpeg: also the JPEG ensemble and its preprocess (backends.jpeg_decode), with as many
            instances as the raw preprocess: a stub process each, so only where clients send JPEG.
    """

    target: Target
    engine: str
    engine_file: Path
    shape: EngineShape
    postprocess: PostprocessSettings
    max_batch_size: int | None = None
    queue_delay_us: int | None = None
    reference_stages: bool = False
    engine_instances: int | None = None
    jpeg: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {list(ENGINES)}")
        if self.engine not in self.target.engines:
            raise ValueError(
                f"target {self.target.name} serves the engines {list(self.target.engines)}, not {self.engine!r}"
            )
        suffix = ENGINE_VARIANTS[self.engine][2]
        if self.engine_file.suffix != suffix:
            raise ValueError(f"the {self.engine} engine loads a {suffix} file, got {self.engine_file}")
        check_readable(self.engine_file, f"{self.engine} engine file")
        check_positive(self.max_batch_size, "max batch size")
        check_positive(self.engine_instances, "engine instance count")
        if self.queue_delay_us is not None and self.queue_delay_us < 0:
            raise ValueError(f"queue delay must be >= 0 us, got {self.queue_delay_us}")
        if len(self.postprocess.classes.names) != self.shape.num_classes:
            raise ValueError(
                f"class table has {len(self.postprocess.classes.names)} ids but the engine has "
                f"{self.shape.num_classes} logits"
            )
        if self.engine == "torch":
            size_of(self.shape)

    def stage_values(self, plan: StagePlan, device: str, instance_kind: str, impl: str = "") -> dict[str, str]:
        return {
            "RESOLUTION": str(self.shape.resolution),
            "NUM_QUERIES": str(self.shape.num_queries),
            "NUM_CLASSES": str(self.shape.num_classes),
            "MASK_SIZE": str(self.shape.mask_size),
            "MAX_BATCH_SIZE": str(self.max_batch_size or plan.max_batch_size),
            "QUEUE_DELAY_US": str(plan.queue_delay_us if self.queue_delay_us is None else self.queue_delay_us),
            "INSTANCE_COUNT": str(plan.instance_count),
            "INSTANCE_KIND": instance_kind,
            "DEVICE": device,
            # GPU tensors reach a python model only when this is "no" (python_backend README).
            "FORCE_CPU_ONLY_INPUT_TENSORS": "no" if instance_kind == "KIND_GPU" else "yes",
            "IMPL": impl,
        }

    def values(self) -> dict[str, dict[str, str]]:
        """{model name: template substitutions}."""
        t = self.target
        pre_impl, post_impl = (
            ("reference", "reference") if self.reference_stages else (t.preprocess_impl, t.postprocess_impl)
        )
        engine = self.stage_values(t.engine, t.engine_device(self.engine), t.engine_instance_kind(self.engine))
        if self.engine_instances is not None:
            engine["INSTANCE_COUNT"] = str(self.engine_instances)
        max_batch = int(engine["MAX_BATCH_SIZE"])
        # The sizes the graph-replaying engines (TensorRT's graphs, the compiled torch engine's
        # buckets) run without padding; 1 has its own graph but is no batch to wait for.
        engine["PREFERRED_BATCH_SIZES"] = ", ".join(str(b) for b in bucket_sizes(max_batch)[1:] or (max_batch,))
        engine["SIZE"] = size_of(self.shape) if self.engine == "torch" else ""
        postprocess = self.stage_values(t.postprocess, t.device, t.python_instance_kind, post_impl)
        postprocess["SCORE_THRESHOLD"] = repr(float(self.postprocess.score_threshold))
        postprocess["NUM_SELECT"] = str(self.postprocess.num_select)
        postprocess["POLYGONS"] = "yes" if self.postprocess.polygons else "no"
        preprocess = self.stage_values(t.preprocess, t.device, t.python_instance_kind, pre_impl)
        values = {
            ENSEMBLE: ensemble_values(ENSEMBLE, ENSEMBLE_INPUTS, PREPROCESS),
            PREPROCESS: preprocess,
            ENGINE: engine,
            POSTPROCESS: postprocess,
        }
        if self.jpeg:
            values[JPEG_ENSEMBLE] = ensemble_values(JPEG_ENSEMBLE, JPEG_ENSEMBLE_INPUTS, PREPROCESS_JPEG)
            values[PREPROCESS_JPEG] = {**preprocess, "DECODER": t.jpeg_decoder}
        return values


def ensemble_values(name: str, inputs: tuple[TensorSpec, ...], preprocess: str) -> dict[str, str]:
    """An ensemble's template values: both ensembles render model_repository/rfdetr_seg's config."""
    (tensor,) = inputs
    return {
        "NAME": name,
        "INPUT": tensor.name,
        "INPUT_DIMS": ", ".join(str(d) for d in tensor.dims),
        "PREPROCESS_MODEL": preprocess,
    }


def render(template: Path, destination: Path, values: dict[str, str]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = string.Template(template.read_text()).substitute(values)
    except KeyError as missing:
        raise ValueError(f"{template}: no value for ${{{missing.args[0]}}}") from None
    destination.write_text(text)


def _copy_stage(source: Path, destination: Path, values: dict[str, str]) -> None:
    """Copies one model folder, rendering its config.pbtxt template."""
    for path in source.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        target = destination / path.relative_to(source)
        if path.name == "config.pbtxt":
            render(path, target, values)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link where possible: engine files are 100+ MB."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def render_repository(spec: RepositorySpec, out: Path) -> Path:
    """Writes the repository's configs and files to `out` (replacing what was there) and
    returns it, compiling nothing: what tests of the rendered configs need on any host."""
    values = spec.values()
    variant, model_file, _ = ENGINE_VARIANTS[spec.engine]
    if out.exists():
        shutil.rmtree(out)
    for stage in (ENSEMBLE, PREPROCESS, POSTPROCESS):
        _copy_stage(SOURCE / stage, out / stage, values[stage])
    if spec.jpeg:
        _copy_stage(SOURCE / ENSEMBLE, out / JPEG_ENSEMBLE, values[JPEG_ENSEMBLE])
        _copy_stage(SOURCE / PREPROCESS_JPEG, out / PREPROCESS_JPEG, values[PREPROCESS_JPEG])
    _copy_stage(SOURCE / ENGINE / variant, out / ENGINE, values[ENGINE])
    (out / ENGINE / "1").mkdir(parents=True, exist_ok=True)
    _link_or_copy(spec.engine_file.resolve(), out / ENGINE / "1" / model_file)
    spec.postprocess.classes.save(out / POSTPROCESS / "1" / CLASSES_FILE)
    return out


def build_repository(spec: RepositorySpec, out: Path) -> Path:
    """render_repository, then a CUDA torch engine compiled here where this host has the GPU
    (precompile_torch_engine)."""
    precompile_torch_engine(spec, render_repository(spec, out))
    return out


def precompile_torch_engine(spec: RepositorySpec, repository: Path) -> Path | None:
    """Compiles a CUDA torch engine's buckets here and leaves torch.compile's cache beside its
    weights, so the server loads it in seconds instead of compiling for minutes. Needs this
    host's GPU, torch and inductor to be the server's (a stale cache only misses). Returns the
    cache, or None when there is nothing to do (another engine, a CPU target, no GPU here).
    """
    if spec.engine != "torch" or spec.target.engine_device("torch") != "cuda":
        return None
    import torch

    if not torch.cuda.is_available():
        return None  # the server compiles it when it loads it
    from backends.engine_compiled import COMPILE_CACHE_FILE, CompiledEngine

    version = repository / ENGINE / "1"
    weights = version / ENGINE_VARIANTS["torch"][1]
    buckets = bucket_sizes(spec.max_batch_size or spec.target.engine.max_batch_size)
    started = time.perf_counter()
    # A bucket's compile is mostly serial Python: one process per bucket fills this host's
    # inductor cache in parallel (3.4 min -> about 1 min for 6 buckets of Nano on an H200), then
    # the engine built here finds every bucket there and records the artifacts.
    workers = [
        subprocess.Popen([sys.executable, "-m", "backends.engine_compiled", size_of(spec.shape), str(weights), str(b)])
        for b in buckets
    ]
    failed = [b for b, worker in zip(buckets, workers) if worker.wait() != 0]
    if failed:
        raise RuntimeError(f"compiling the torch engine failed for batch sizes {failed} (see the errors above)")
    engine = CompiledEngine(size_of(spec.shape), weights, "cuda", buckets)
    cache = version / COMPILE_CACHE_FILE
    size = CompiledEngine.save_compile_cache(cache)
    print(
        f"compiled batches {engine.buckets} in {time.perf_counter() - started:.0f} s; cache {cache} ({size / 1e6:.0f} MB)",
        file=sys.stderr,
    )
    return cache


# A rendered parameter: parameters { key: "device" value: { string_value: "cuda" } }
_PARAMETER = re.compile(r'key:\s*"([^"]+)"\s*value:\s*{\s*string_value:\s*"([^"]*)"\s*}')


def repository_target(repository: Path) -> Target:
    """The target a built repository serves, read back from its preprocess config (its `device`
    and FORCE_CPU_ONLY_INPUT_TENSORS tell the targets apart), so that a repository served as it
    is still gets its target's tritonserver options (the gpu target's CUDA memory pool).

    Raises:
        ValueError: no readable preprocess config there, or one no target writes, naming it.
    """
    path = repository / PREPROCESS / "config.pbtxt"
    try:
        parameters = dict(_PARAMETER.findall(path.read_text()))
    except OSError as error:
        raise ValueError(f"not a repository this project built: cannot read {path} ({error.strerror})") from error
    device, gpu_tensors = parameters.get("device"), parameters.get("FORCE_CPU_ONLY_INPUT_TENSORS") == "no"
    for target in TARGETS.values():
        if (target.device, target.gpu_tensors) == (device, gpu_tensors):
            return target
    raise ValueError(f"{path}: device {device!r} with GPU tensors {gpu_tensors} is no target's ({list(TARGETS)})")


def beside(onnx: Path, suffix: str) -> Path:
    """A file tools.export_onnx writes next to the ONNX: X.onnx -> X<suffix>."""
    return onnx.with_suffix(suffix)


def load_classes(path: Path) -> ClassTable:
    check_readable(path, "class table")
    return ClassTable.load(path)


def spec_from_files(
    target: str,
    engine: str | None,
    onnx: Path,
    score_threshold: float,
    *,
    classes: Path | None = None,
    weights: Path | None = None,
    plan: Path | None = None,
    num_select: int | None = None,
    max_batch_size: int | None = None,
    queue_delay_us: int | None = None,
    reference_stages: bool = False,
    polygons: bool = True,
    engine_instances: int | None = None,
    jpeg: bool = False,
) -> RepositorySpec:
    """The spec for an export's files; every value is checked, naming what is wrong."""
    chosen = get_target(target)
    engine = engine or chosen.engines[0]
    check_readable(onnx, "ONNX file")
    shape = engine_shape_from_onnx(onnx)
    engine_files = {"onnx": onnx, "torch": weights or beside(onnx, ".pth"), "tensorrt": plan}
    if engine not in engine_files:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    if engine not in chosen.engines:
        raise ValueError(f"target {chosen.name} serves the engines {list(chosen.engines)}, not {engine!r}")
    if engine_files[engine] is None:
        raise ValueError("the tensorrt engine needs its plan file (--plan), built by build_engines.sh")
    settings = PostprocessSettings(
        num_select=shape.num_queries if num_select is None else num_select,
        score_threshold=score_threshold,
        classes=load_classes(classes or beside(onnx, ".classes.json")),
        polygons=polygons,
    )
    return RepositorySpec(
        chosen,
        engine,
        engine_files[engine],
        shape,
        settings,
        max_batch_size,
        queue_delay_us,
        reference_stages,
        engine_instances,
        jpeg,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="cpu", help=f"one of {list(TARGETS)}")
    parser.add_argument("--engine", help=f"one of {list(ENGINES)}; default: the target's first")
    parser.add_argument("--onnx", type=Path, required=True, help="the exported ONNX (gives the tensor sizes)")
    parser.add_argument("--classes", type=Path, help="class table JSON (default: beside the ONNX)")
    parser.add_argument("--weights", type=Path, help="torch engine: checkpoint .pth (default: beside the ONNX)")
    parser.add_argument("--plan", type=Path, help="tensorrt engine: the plan built by build_engines.sh")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--num-select", type=int, help="top-k size (default: the engine's query count)")
    parser.add_argument("--max-batch-size", type=int, help="every stage's (default: the target's)")
    parser.add_argument("--queue-delay-us", type=int, help="every stage's (default: the target's)")
    parser.add_argument(
        "--engine-instances",
        type=int,
        help="the engine's instance count (default: the target's; on an H200 two served the ensemble "
        "11-20%% more over CUDA shm, ~5%% less over system shm and plain gRPC: "
        "benchmarks/results/h200/host-upload.md)",
    )
    parser.add_argument(
        "--reference-stages",
        action="store_true",
        help="python stages run the reference torch ops, not kernels",
    )
    parser.add_argument(
        "--no-polygons",
        action="store_true",
        help="skip the contours (polygon outputs stay empty): masks only",
    )
    parser.add_argument(
        "--jpeg",
        action="store_true",
        help=f"also serve {JPEG_ENSEMBLE}: frames sent as JPEG files, decoded by the server "
        "(for clients on other hosts: python -m clients stream ... --transport jpeg)",
    )
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    args = parser.parse_args(argv)
    try:
        spec = spec_from_files(
            args.target,
            args.engine,
            args.onnx,
            args.score_threshold,
            classes=args.classes,
            weights=args.weights,
            plan=args.plan,
            num_select=args.num_select,
            max_batch_size=args.max_batch_size,
            queue_delay_us=args.queue_delay_us,
            reference_stages=args.reference_stages,
            polygons=not args.no_polygons,
            engine_instances=args.engine_instances,
            jpeg=args.jpeg,
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    print(build_repository(spec, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
