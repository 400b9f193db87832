#!/usr/bin/env bash
# A scorer of the offline DCSM study (launch/dcsm_shapes.sh) continued past its 3,000 steps
# into a copy of its workdir, workdirs/shapes_dcsm_VARIANT_[RULE_]SEED_STEPS (the study's stays as
# it is): resumed with a larger total_steps (constant learning rate, epochs ordered by the
# seed: the same run as one of STEPS steps), then evaluated and diagnosed as the study's.
#   bash launch/dcsm_continue.sh SEED VARIANT STEPS [RULE]  # e.g. 2 grounded 9000 [token]
# Then: python -m benchmarks.dcsm_study --continued grounded_2_9000 [...] [--curves PNG]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$1 variant=$2 steps=$3 rule=${4:-}
data=workdirs/shapes_data_$seed
clip=workdirs/shapes_clip_${variant}_$seed
from=workdirs/shapes_dcsm_${variant}_${rule:+${rule}_}$seed
dcsm=${from}_$steps
py=${PYTHON:-.venv/bin/python}
# (the copy without the study run's evaluation, which names the study's scorer)
[ -e "$dcsm" ] || { cp -r "$from" "$dcsm.tmp" && rm -rf "$dcsm.tmp/run.lock" \
    "$dcsm.tmp/evaluation" "$dcsm.tmp/diagnostics.json" && mv "$dcsm.tmp" "$dcsm"; }
$py -m hierre_jax.dcsm train --config configs/dcsm/shapes.py --config.model="$clip/export" \
    --config.data_dir="$data" --config.eval.data_dir="$data" --config.workdir="$dcsm" \
    --config.seed="$seed" --config.total_steps="$steps" --allow_config_change \
    ${rule:+--config.column_rule="$rule"}
$py -m hierre_jax.dcsm evaluate --model="$clip/export" --scorer="$dcsm/scorer" \
    --data_dir="$data" --output_dir="$dcsm/evaluation" --benchmarks=procedural_spatial,\
procedural_spatial_unseen,procedural_spatial_swap,procedural_colour,procedural_colour_unseen,\
procedural_negation,procedural_negation_present
$py -m benchmarks.dcsm_diagnostics --seed "$seed" --variant "$variant" \
    --scorer "$dcsm/scorer" --out "$dcsm/diagnostics.json"
