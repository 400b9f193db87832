#!/usr/bin/env bash
# Parity against the PyTorch references that import torchvision: timm (MERU's image tower,
# issue 29) and open_clip (open_clip-native checkpoints, issue 30). PyPI's torchvision imports
# only beside a CUDA build of torch (torch 2.14.1 + torchvision 0.29.1 here, about 5.5 GB),
# not the CPU build that the test suite pins, so they run in an environment of their own; in
# the CPU suite these tests are skipped.
#   bash launch/reference_parity.sh [VENV]   (default /tmp/venv_timm)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/venv_timm}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 timm open-clip-torch==3.3.0 \
  -e '.[test]'
"$venv/bin/python" -c "import timm, open_clip, torch; print('timm', timm.__version__, \
'open_clip', open_clip.__version__, 'torch', torch.__version__)"
"$venv/bin/python" -m pytest -q tests/test_meru.py tests/test_open_clip.py \
  -k "(parity and timm) or parity_with_open_clip" -rs
