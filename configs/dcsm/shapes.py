"""The DCSM scorer on the frozen small CLIP of configs/contrastive/shapes.py, trained on the
procedural shapes data (docs/dcsm.md). Maps are 65 x 30 (64 px images, 8 px patches).

  python -m hierre_jax.dcsm train --config configs/dcsm/shapes.py
"""
from configs.contrastive import shapes
from configs.dcsm import base


def get_config():
  config = base.get_config()
  config.model = "workdirs/shapes_clip/export"
  config.data_dir = shapes.DATA
  config.workdir = "workdirs/shapes_dcsm"
  # 600 pairs per set at 8 per block: 75 steps an epoch; 8 epochs (the release: 26) keep the
  # study within 10 minutes of a 2-core CPU (about 1 s a step: the CNN's fc1 dominates)
  config.num_epochs = 8
  config.checkpoint_every = 250
  config.table_generator = "numpy"  # as the study's runs of 2026-12-04 drew it
  config.eval.benchmarks = ("procedural_spatial", "procedural_spatial_unseen",
                            "procedural_spatial_swap", "procedural_colour",
                            "procedural_colour_unseen", "procedural_negation")
  config.eval.data_dir = shapes.DATA
  config.eval.every_steps = 500
  return config
