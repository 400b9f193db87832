#!/usr/bin/env bash
# MERU's image tower against timm's own VisionTransformer (issue 29), in an environment of
# its own: timm needs torchvision, and PyPI's torchvision imports only beside a CUDA build of
# torch (torch 2.14.1 + torchvision 0.29.1 here, about 5.5 GB), not the CPU build that the
# test suite pins. Runs the suite's timm parity tests (skipped where timm does not import).
#   bash launch/timm_parity.sh [VENV]   (default /tmp/venv_timm)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/venv_timm}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 timm -e '.[test]'
"$venv/bin/python" -c "import timm, torch; print('timm', timm.__version__, 'torch', torch.__version__)"
"$venv/bin/python" -m pytest -q tests/test_meru.py -k "parity and timm" -rs
