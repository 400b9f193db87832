#!/usr/bin/env bash
# The order-sensitive tests (pytest -m reordering) under a second numeric configuration: one
# core and one intra-op thread (XLA, Eigen, OpenMP / PyTorch), XLA's CPU backend unoptimised,
# 128-bit vectors and no fusion emitters, so that every float32 reduction runs in another
# order and blocking than the default run. Usage: bash tests/numeric_configurations.sh
# [pytest args]. The README records the configurations the suite was last run under.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0 \
--xla_cpu_prefer_vector_width=128 --xla_cpu_use_fusion_emitters=false"
echo "second numeric configuration: taskset -c 0, OMP_NUM_THREADS=1, XLA_FLAGS=$XLA_FLAGS"
exec taskset -c 0 "$PYTHON" -m pytest -q -m reordering "$@" tests
