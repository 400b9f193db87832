"""configs/scratch.py on a MERU-shaped random model: the same budget, data, schedule and
evaluation, the text tower trained from scratch with the RE loss only, in hyperbolic space
(MERU's Lorentz geometry; root MERU's origin by default) or, with
--config.random_init.options.hyperbolic=False, on the sphere (the release's CLIP baseline:
the same towers, no curvature).

A text tower of 2 layers, width 256, 4 heads, MLP 1024 (MERU's 12 x 512 cut as scratch.py
cuts CLIP's), projection 256, a 1-layer random image tower; the study across geometries
and seeds is `python -m benchmarks.hyperbolic_study` (docs/hyperbolic_study.md).

  python -m hierre_jax.train --config configs/meru_scratch.py [--config.root=empty_string]
"""
import ml_collections

from configs import scratch


def get_config():
  config = scratch.get_config()
  config.random_init = ml_collections.ConfigDict(dict(
      family="meru", text=dict(hidden_size=256, num_hidden_layers=2),
      vision=dict(hidden_size=128, num_hidden_layers=1, image_size=224, patch_size=32),
      projection_dim=256, options=dict(hyperbolic=True)))
  config.random_init.seed = config.get_ref("seed")  # one seed: weights, batches, dropout
  config.root = "origin"
  config.workdir = "workdirs/meru_scratch"
  return config
