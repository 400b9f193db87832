"""configs/demo.py shrunk for tests: a tiny random model of a family of the test matrix
(`family_matrix.MATRIX`), bundled sample rows, a few steps.

  --config tests/tiny_train_config.py         a tiny CLIP
  --config tests/tiny_train_config.py:FAMILY  a tiny model of FAMILY (align, meru, siglip, toy)
"""
import ml_collections

from configs import demo
import family_matrix


def get_config(family="clip"):
  config = demo.get_config()
  config.random_init = ml_collections.ConfigDict(family_matrix.MATRIX[family].random_init)
  config.random_init.seed = config.get_ref("seed")  # one seed, as in every shipped config
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
