"""Embedded default: RE training of a small random CLIP, no download, < 3 minutes on 2 CPU cores.

Trains on ../shared/hierarcaps/hierarcaps_coco_train.csv.gz when present (run from
the repository root), else on the tiny sample bundled with the package.
"""
import os

import ml_collections

from configs import clip_b32

SHARED_TRAIN = "../shared/hierarcaps/hierarcaps_coco_train.csv.gz"
BUNDLED_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                              "hierarcaps_sample.csv")


def get_config():
  config = clip_b32.get_config()
  config.model = ""
  config.random_init = ml_collections.ConfigDict(dict(
      family="clip",  # or any family of hierre_jax.models (--config.random_init.family=siglip)
      text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77),
      vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, image_size=64, patch_size=16),
      projection_dim=64))
  config.random_init.seed = config.get_ref("seed")  # one seed: weights, batches, dropout
  config.train_csv = SHARED_TRAIN if os.path.exists(SHARED_TRAIN) else BUNDLED_SAMPLE
  if not os.path.exists(config.eval.test_csv):
    config.eval.test_csv = ""  # no HierarCaps test set here: train and export only
  config.workdir = "workdirs/demo"
  config.pack_rows_multiple = 1  # CPU: fewer FLOPs beat fewer compilations
  config.length_multiple = 8
  config.length_groups = ((0, 1), (2, 3))
  config.batch_size = 8
  config.total_steps = 400
  config.lr = 3e-4  # random weights: a fine-tuning rate of 1e-7 would change nothing visible
  config.schedule = "warmup_cosine"
  config.warmup_steps = 40
  config.log_every = 20
  config.checkpoint_every = 100
  return config
