"""The DCSM scorer on the frozen small CLIP of configs/contrastive/shapes.py, trained on the
procedural shapes data (docs/dcsm.md). Maps are 65 x 30 (64 px images, 8 px patches).

  python -m hierre_jax.dcsm train --config configs/dcsm/shapes.py

Exported at the evaluated step whose mean validation pair accuracy (the training format on
the 100 validation pairs of each set) is highest; the learning curves (validation and the
first 100 training pairs) are in workdir/metrics.jsonl and curves.png. 3,000 steps are past
the point where the baseline backbone's validation pairs stop improving, not enough for
the grounded backbone's spatial pairs (docs/dcsm.md: a run continues with
--config.total_steps=N --allow_config_change; the schedule is constant, so that is the run
of N steps).
"""
from configs.contrastive import shapes
from configs.dcsm import base

STEPS = 3000


def get_config():
  config = base.get_config()
  config.model = "workdirs/shapes_clip/export"
  config.data_dir = shapes.DATA
  config.workdir = "workdirs/shapes_dcsm"
  # 4 pairs per block (8 x 8 maps): a quarter of the release's block work per step, so that
  # 3,000 steps (20 epochs of the 600 pairs per set) fit a 2-core CPU
  config.batch_size = 4
  config.total_steps = STEPS
  config.checkpoint_every = 250
  config.table_generator = "numpy"  # as the study's runs of 2026-12-04 drew it
  config.eval.every_steps = 150
  config.eval.at_start = True
  config.eval.validation_pairs = 100
  config.eval.train_pairs = 100
  config.eval.select = "validation"
  return config
