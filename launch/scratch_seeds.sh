#!/usr/bin/env bash
# The from-scratch row (docs/scratch.md) over seeds: configs/scratch.py trained with each seed
# (the batch order and the random initialisation both follow it), then one evaluation table
# of the random initialisation and every trained seed, with the length baselines, intervals
# and paired differences (evaluate's results.md).
#   bash launch/scratch_seeds.sh [SEEDS...]     (default 0 1 2; about 10 min a seed on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
seeds=("$@")
[ $# -eq 0 ] && seeds=(0 1 2)
models=(--model=workdirs/scratch_seed${seeds[0]}/random_init)
for s in "${seeds[@]}"; do
  $PY -m hierre_jax.train --config configs/scratch.py --config.seed="$s" \
      --config.workdir="workdirs/scratch_seed$s"
  models+=(--model="workdirs/scratch_seed$s")
done
$PY -m hierre_jax.evaluate "${models[@]}" --evals=hierarcaps,hyperlex --data_dir=../shared \
    --reference=scratch --output_dir=workdirs/scratch_seeds_eval
