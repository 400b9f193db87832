"""configs/demo.py shrunk for tests: a tiny random model, bundled sample rows, a few steps.

  --config tests/tiny_train_config.py        a tiny CLIP
  --config tests/tiny_train_config.py:align  a tiny ALIGN (BERT + EfficientNet)
  --config tests/tiny_train_config.py:meru   a tiny MERU (hyperbolic)
  --config tests/tiny_train_config.py:siglip a tiny SigLIP (text length 16)
"""
import ml_collections

from configs import demo
from hierre_jax.models.align import random_init as align_random_init


def get_config(family="clip"):
  config = demo.get_config()
  if family == "align":
    config.random_init = ml_collections.ConfigDict(dict(
        family="align", text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=64),
        vision=align_random_init.TINY_VISION, projection_dim=40, seed=0))
  elif family == "meru":
    config.random_init = ml_collections.ConfigDict(dict(
        family="meru", text=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=256,
                                 max_position_embeddings=77),
        vision=dict(hidden_size=64, num_hidden_layers=2, image_size=32, patch_size=16),
        projection_dim=16, seed=0))
  elif family == "siglip":
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4)
    config.random_init = ml_collections.ConfigDict(dict(
        family="siglip", text=dict(tower, max_position_embeddings=16, vocab_size=500),
        vision=dict(tower, image_size=32, patch_size=16), projection_dim=32, seed=0))
  else:
    config.random_init.text.update(hidden_size=32, intermediate_size=64, num_attention_heads=4)
    config.random_init.vision.update(hidden_size=32, intermediate_size=64, image_size=32,
                                     patch_size=16)
    config.random_init.projection_dim = 16
  config.train_csv = demo.BUNDLED_SAMPLE
  config.workdir = "/tmp/hierre_jax_tiny"
  config.total_steps = 6
  config.warmup_steps = 2
  config.lr = 1e-3
  config.log_every = 1
  config.checkpoint_every = 2
  config.eval.test_csv = ""
  config.compilation_cache_dir = ""  # the tests' session cache (conftest), not the user's
  return config
