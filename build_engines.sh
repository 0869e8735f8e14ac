#!/usr/bin/env bash
# RF-DETR-Seg checkpoint -> ONNX -> TensorRT plan (one batch profile) -> servable model repository.
#
#   ./build_engines.sh [--size nano] [--checkpoint rf-detr-seg-nano.pth | --onnx FILE.onnx]
#                      [--max-batch 32] [--opt-batch 8] [--precision fp16|fp32] [--target gpu|jetson]
#                      [--out build/engines] [--repository build/model_repository] [--jpeg]
#
# Run it from the repository root with the project's Python environment active, on the GPU host
# that will serve the plan. A plan only loads on the GPU model and the TensorRT version that
# built it, so build it with the TensorRT the server runs: for tritonserver:24.10 (see
# docker-compose.yml) that is the trtexec of nvcr.io/nvidia/tensorrt:24.10-py3 on the T4 host; on
# a Jetson, JetPack's trtexec if its TensorRT version is the one in the -igpu image. The plan is
# named <out>/rfdetr-seg-<size>-<precision>.plan and says nothing of the GPU or TensorRT version
# it was built for: rebuild it after any change of either.
#
# --onnx FILE.onnx reuses an ONNX exported earlier by tools.export_onnx (on a host with rfdetr,
# say) instead of exporting again; its class table FILE.classes.json must sit beside it.
# Without --checkpoint or --onnx the export uses random weights (tools.export_onnx says so loudly).
# --jpeg adds the JPEG ensemble, rfdetr_seg_jpeg, for clients on other hosts (--transport jpeg).
set -euo pipefail

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build_engines.sh: $*" >&2; exit 2; }

size=nano checkpoint="" onnx="" max_batch=32 opt_batch="" precision=fp16 target=gpu
out=build/engines repository=build/model_repository jpeg=()
while (($#)); do
  case "$1" in
    --size|--checkpoint|--onnx|--max-batch|--opt-batch|--precision|--target|--out|--repository)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --size) size=$2 ;;
        --checkpoint) checkpoint=$2 ;;
        --onnx) onnx=$2 ;;
        --max-batch) max_batch=$2 ;;
        --opt-batch) opt_batch=$2 ;;
        --precision) precision=$2 ;;
        --target) target=$2 ;;
        --out) out=$2 ;;
        --repository) repository=$2 ;;
      esac
      shift 2 ;;
    --jpeg) jpeg=(--jpeg); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# Relative defaults and `python -m tools...` both assume the repository root.
[[ -f backends/contract.py && -d model_repository ]] \
  || die "run me from the repository root (the folder holding backends/ and model_repository/)"

[[ "$precision" == fp16 || "$precision" == fp32 ]] \
  || die "--precision must be fp16 or fp32, got '$precision'"
# The repository's target (tools.targets): how the python stages around the plan run.
[[ "$target" == gpu || "$target" == jetson ]] || die "--target must be gpu or jetson, got '$target'"
[[ "$max_batch" =~ ^[1-9][0-9]*$ ]] || die "--max-batch must be a positive integer, got '$max_batch'"
# The opt batch defaults to 8, or to the max batch when that is smaller.
[[ -n "$opt_batch" ]] || opt_batch=$((max_batch < 8 ? max_batch : 8))
[[ "$opt_batch" =~ ^[1-9][0-9]*$ ]] || die "--opt-batch must be a positive integer, got '$opt_batch'"
((opt_batch <= max_batch)) || die "--opt-batch ($opt_batch) must not exceed --max-batch ($max_batch)"
[[ -z "$checkpoint" || -z "$onnx" ]] \
  || die "give --checkpoint (export) or --onnx (reuse an export), not both"

# The engine's input name and resolution come from the one contract every config uses.
shape_info=$(python - "$size" <<'EOF'
import sys
from backends.contract import ENGINE_INPUT, MODEL_SIZES
size = MODEL_SIZES.get(sys.argv[1])
if size is None:
    choices = ", ".join(MODEL_SIZES)
    sys.exit(f"build_engines.sh: unknown --size {sys.argv[1]!r}; choose one of {choices}")
print(ENGINE_INPUT, size.resolution)
EOF
) || exit 2
read -r input_name resolution <<<"$shape_info"

# Checked before the export, which takes a while.
if ! command -v trtexec >/dev/null; then
  die "trtexec not found on PATH. It ships with TensorRT: run this in the NVIDIA TensorRT container
  nvcr.io/nvidia/tensorrt:24.10-py3 (the release matching tritonserver:24.10; trtexec is in
  /opt/tensorrt/bin), or on a Jetson with JetPack's TensorRT (/usr/src/tensorrt/bin), with that
  folder on PATH"
fi

mkdir -p "$out"
onnx_given=no
if [[ -n "$onnx" ]]; then
  onnx_given=yes
  [[ -f "$onnx" ]] || die "--onnx file not found: $onnx"
  classes="${onnx%.onnx}.classes.json"
  [[ -f "$classes" ]] \
    || die "no class table beside $onnx: expected $classes (tools.export_onnx writes it)"
else
  export_args=(--size "$size" --out "$out")
  [[ -z "$checkpoint" ]] || export_args+=(--checkpoint "$checkpoint")
  python -m tools.export_onnx "${export_args[@]}"
  onnx="$out/rfdetr-seg-$size.onnx"
  classes="$out/rfdetr-seg-$size.classes.json"
fi

plan="$out/rfdetr-seg-$size-$precision.plan"
chw="3x${resolution}x${resolution}"
# One optimization profile over the batch axis alone (the export's only dynamic axis); opt is the
# batch TensorRT tunes its kernels for. Workspace as rfdetr's own trtexec call.
trtexec_args=(
  --onnx="$onnx"
  --saveEngine="$plan"
  --minShapes="$input_name:1x$chw"
  --optShapes="$input_name:${opt_batch}x$chw"
  --maxShapes="$input_name:${max_batch}x$chw"
  --memPoolSize=workspace:4096
  --skipInference
)
[[ "$precision" == fp32 ]] || trtexec_args+=(--fp16)
rm -f "$plan"  # a plan left from an earlier build must not pass the check below
# The timing cache makes a rebuild on the same GPU and TensorRT skip kernel timing.
trtexec_args+=(--timingCacheFile="$out/timing.cache")
echo "build_engines.sh: trtexec ${trtexec_args[*]}" >&2
trtexec "${trtexec_args[@]}" \
  || die "trtexec could not build the plan (exit $?): see its log above. The GPU must be one this
  TensorRT supports, with the memory for batch $max_batch (try a smaller --max-batch)"
[[ -s "$plan" ]] || die "trtexec exited 0 but wrote no plan at $plan"

# FP16 is a known accuracy risk for RF-DETR (rf-detr #176, #649): compare the plan with the ONNX
# on a few frames before anything serves it.
# Random weights never score 0.5: check them at the threshold the demo serves them with.
check_threshold=0.5
[[ -n "$checkpoint" || "$onnx_given" == yes ]] || check_threshold=0.05
python -m tools.check_plan --plan "$plan" --onnx "$onnx" --classes "$classes" \
  --score-threshold "$check_threshold" \
  || die "the $precision plan changes detections against the ONNX (report above): try --precision fp32"

python -m tools.build_repository --target "$target" --engine tensorrt --plan "$plan" --onnx "$onnx" \
  --classes "$classes" --max-batch-size "$max_batch" "${jpeg[@]}" --out "$repository"
echo "build_engines.sh: $repository serves $plan, which runs only on this GPU model with this" \
  "TensorRT version" >&2
