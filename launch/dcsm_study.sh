#!/usr/bin/env bash
# The offline DCSM study of docs/dcsm.md: for seeds 0, 1, 2 the baseline backbone
# (contrastive only) and the grounded one (plus the supervised grounding loss), each with
# its scorer trained to 3,000 steps and exported at the step best on validation, and on the
# grounded backbone a second scorer with the token column rule; then the study's tables and
# learning curves (benchmarks/dcsm_study.py -> docs/dcsm_study.json, docs/dcsm_curves.png).
# About 1 h 45 min on 2 cores (2026-12-07).
#   bash launch/dcsm_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in 0 1 2; do
  bash launch/dcsm_shapes.sh "$seed"
  bash launch/dcsm_shapes.sh "$seed" grounded
  bash launch/dcsm_shapes.sh "$seed" grounded token
done
${PYTHON:-.venv/bin/python} -m benchmarks.dcsm_study --out docs/dcsm_study.json \
    --curves docs/dcsm_curves.png
