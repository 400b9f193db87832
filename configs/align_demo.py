"""configs/demo.py with a small random ALIGN (BERT text tower, EfficientNet image tower)
built locally: RE training of its text tower on 2 CPU cores, no download.

  python -m hierre_jax.train --config configs/align_demo.py
"""
import ml_collections

from configs import demo
from hierre_jax.models.align import random_init


def get_config():
  config = demo.get_config()
  config.random_init = ml_collections.ConfigDict(dict(
      family="align",
      text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64),
      vision=random_init.TINY_VISION, projection_dim=40))
  config.random_init.seed = config.get_ref("seed")  # one seed: weights, batches, dropout
  config.workdir = "workdirs/align_demo"
  return config
