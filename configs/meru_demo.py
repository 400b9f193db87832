"""configs/demo.py with a small random MERU (hyperbolic; the release's .pth layout) built
locally: RE training of its text tower in hyperbolic space on 2 CPU cores, no download.

The root is MERU's origin (config.root="origin": radius d(O, x), MERU's exterior angle);
config.root="empty_string" trains with the lifted embedding of "" as root instead. The
export is a .pth in workdirs/meru_demo/export.

  python -m hierre_jax.train --config configs/meru_demo.py
"""
import ml_collections

from configs import demo
from hierre_jax.models.meru import random_init


def get_config():
  config = demo.get_config()
  config.random_init = ml_collections.ConfigDict(dict(
      family="meru", text=dict(hidden_size=128, num_hidden_layers=2),
      vision=random_init.TINY_VISION, projection_dim=64))
  config.random_init.seed = config.get_ref("seed")  # one seed: weights, batches, dropout
  config.root = "origin"
  config.workdir = "workdirs/meru_demo"
  return config
