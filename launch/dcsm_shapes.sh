#!/usr/bin/env bash
# One run of the offline DCSM study of docs/dcsm.md, end to end on a CPU: procedural data, a
# small CLIP trained from scratch (both towers, contrastive), the DCSM scorer on its frozen
# features (3,000 steps, exported at the step best on validation), then the global cosine
# vs DCSM on the held-out test sets and the diagnostics (workdirs/shapes_dcsm_*/
# diagnostics.json). The whole study: launch/dcsm_study.sh.
#   bash launch/dcsm_shapes.sh [SEED] [tokens|grounded] [COLUMN_RULE]
# The positive controls, a backbone trained with a token-level term as well, in
# workdirs/shapes_{clip,dcsm}_VARIANT_SEED: "tokens" FILIP's token-wise contrastive term
# (configs/contrastive/shapes_tokens.py), "grounded" the supervised grounding loss
# (configs/contrastive/shapes_grounded.py). COLUMN_RULE (token, insert): the scorer's
# functional-row column rule instead of the release's, in workdirs/shapes_dcsm_VARIANT_RULE_
# SEED (the backbone the same).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-0}
variant=${2:-}
rule=${3:-}
config=configs/contrastive/shapes${variant:+_$variant}.py
data=workdirs/shapes_data_$seed
clip=workdirs/shapes_clip_${variant:+${variant}_}$seed
dcsm=workdirs/shapes_dcsm_${variant:+${variant}_}${rule:+${rule}_}$seed
py=${PYTHON:-.venv/bin/python}
[ -f "$data/procedural.json" ] || $py -m hierre_jax.dcsm make-data --out "$data" --seed "$seed"
$py -m hierre_jax.contrastive --config "$config" \
    --config.train_csv="$data/train/captions.csv" --config.eval.csv="$data/val/captions.csv" \
    --config.workdir="$clip" --config.seed="$seed"
$py -m hierre_jax.dcsm train --config configs/dcsm/shapes.py --config.model="$clip/export" \
    --config.data_dir="$data" --config.eval.data_dir="$data" --config.workdir="$dcsm" \
    --config.seed="$seed" ${rule:+--config.column_rule="$rule"}
$py -m hierre_jax.dcsm evaluate --model="$clip/export" --scorer="$dcsm/scorer" \
    --data_dir="$data" --output_dir="$dcsm/evaluation" --benchmarks=procedural_spatial,\
procedural_spatial_unseen,procedural_spatial_swap,procedural_colour,procedural_colour_unseen,\
procedural_negation,procedural_negation_present
$py -m benchmarks.dcsm_diagnostics --seed "$seed" ${variant:+--variant "$variant"} \
    --scorer "$dcsm/scorer" --out "$dcsm/diagnostics.json"
