#!/usr/bin/env bash
# The accelerator measurements in two device commands, for a session lent a GPU by the device
# tool (15 minutes in all, at most 10 a command). First, the time to result of the paper's
# recipe (random ViT-B/32, one epoch of the shared training rows, HierarCaps / HyperLex /
# COCO 1K evaluated at the start and the end, export) in float32 and bfloat16, compile
# seconds per shape, the same recipe on the earlier embedding path. Second (`families`),
# every family's towers against its PyTorch reference and its RE step where a benchmark has
# one: CLIP's step, ALIGN's and SigLIP's towers and steps, MERU's towers, traversal and
# RE step, open_clip's towers. Each result goes to $OUT as it
# finishes.
#
#   bash launch/device_checks.sh stage   # here, once: the data (../shared does not travel)
#                                        # and the wheels the device lacks, both git-ignored
#   device runs: command "bash launch/device_checks.sh", then
#                "bash launch/device_checks.sh families"; carry [".device_data", ".whl"],
#                timeout_s 600 each
#
# MODEL=demo STEPS=2 bash launch/device_checks.sh checks the plumbing on a CPU (the
# families run at the real shapes: long on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
data=.device_data
if [ "${1:-}" = stage ]; then
  shared=${SHARED:-../shared}
  set -e
  mkdir -p "$data/hierarcaps" "$data/hyperlex" "$data/coco" .whl
  cp -r "$shared"/hierarcaps/{hierarcaps_test.csv,hierarcaps_test_expanded.csv.gz} \
    "$shared"/hierarcaps/{hierarcaps_coco_train.csv.gz,test_images} "$data/hierarcaps/"
  cp "$shared/hyperlex/hyperlex-all.txt" "$data/hyperlex/"
  cp "$shared/coco/captions_val2017.json" "$data/coco/"
  # Pure-Python packages the device image does not hold (KINDS.md lists what it has).
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl \
    ml_collections==1.1.0 tensorboardX==2.6.5 ftfy==6.3.1 wcwidth sentencepiece==0.2.3 \
    open_clip_torch==3.3.0
  du -sh "$data" .whl
  exit
fi
out=${OUT:-device_out}
model=${MODEL:-vit_b32}
steps=()
if [ -n "${STEPS:-}" ]; then steps=(--steps "$STEPS"); fi
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
"$py" -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/devices.txt"
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | grep -v "it/s\]" | tee "$out/$name.txt"
}
if [ "${1:-}" = families ]; then  # each within the 600 s of one device command
  rows=(--train_csv "$data/hierarcaps/hierarcaps_coco_train.csv.gz")
  run clip_step 120 "$py" -m benchmarks.train_step_throughput --variants grouped,packed \
    "${rows[@]}"
  run align_throughput 120 "$py" -m benchmarks.align_throughput "${rows[@]}"
  run siglip_throughput 120 "$py" -m benchmarks.siglip_throughput "${rows[@]}"
  run meru_towers 120 "$py" -m benchmarks.meru_towers --size l "${rows[@]}"
  run open_clip_towers 90 "$py" -m benchmarks.open_clip_towers --model_name ViT-B-32
  exit
fi
recipe=("$py" -m benchmarks.run_time --model "$model" --data_dir "$data" "${steps[@]}")
run run_time_float32 200 "${recipe[@]}" --variants today
run run_time_bfloat16 150 "${recipe[@]}" --variants today -- --config.compute_dtype=bfloat16
run compile_time 60 "$py" -m benchmarks.compile_time
run run_time_earlier 180 "${recipe[@]}" --variants earlier
