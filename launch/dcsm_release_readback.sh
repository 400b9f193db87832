#!/usr/bin/env bash
# export-release's .pt read back by the DCSM release's pinned versions (transformers 4.26.1,
# tokenizers 0.13.3): written and scored by our code (tests/fixtures/
# export_for_release_check.py), then loaded and scored in an environment of its own as the
# release's scripts load it (tests/fixtures/check_release_readback_4_26.py). Run before
# landing a change to export-release; prints the largest differences.
#   bash launch/dcsm_release_readback.sh [ENV_DIR]     (default /tmp/hierre_jax_dcsm_426)
set -euo pipefail
cd "$(dirname "$0")/.."
env=${1:-/tmp/hierre_jax_dcsm_426}
[ -x "$env/bin/python" ] || python3 -m venv "$env"
"$env/bin/pip" install -q transformers==4.26.1 tokenizers==0.13.3 "numpy<2" torch==2.13.0
out=$(mktemp -d)
${PYTHON:-.venv/bin/python} tests/fixtures/export_for_release_check.py "$out"
"$env/bin/python" tests/fixtures/check_release_readback_4_26.py "$out"
rm -rf "$out"
