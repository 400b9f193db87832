#!/usr/bin/env bash
# Single GPU host (one or more GPUs, data parallel over all of them).
#   bash launch/gpu_host.sh configs/clip_b32.py --config.model=/data/clip-vit-base-patch32
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: launch/gpu_host.sh CONFIG [--config.key=value ...]}; shift
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -U "jax[cuda12]"
  .venv/bin/pip install -q -e .
fi
# Let XLA take GPU memory as it needs it rather than 75% up front (shared hosts).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec .venv/bin/python -m hierre_jax.train --config "$config" "$@"
