#!/usr/bin/env bash
# The DCSM release's checkpoint as its pinned versions write it (transformers 4.26.1,
# tokenizers 0.13.3, torch): an environment of its own, then
# tests/fixtures/make_dcsm_release_4_26.py, whose small output is committed.
#   bash launch/dcsm_release_fixture.sh [ENV_DIR]     (default /tmp/hierre_jax_dcsm_426)
set -euo pipefail
cd "$(dirname "$0")/.."
env=${1:-/tmp/hierre_jax_dcsm_426}
[ -x "$env/bin/python" ] || python3 -m venv "$env"
"$env/bin/pip" install -q transformers==4.26.1 tokenizers==0.13.3 "numpy<2" torch==2.13.0
"$env/bin/python" tests/fixtures/make_dcsm_release_4_26.py
