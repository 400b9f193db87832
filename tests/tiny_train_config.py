"""configs/demo.py shrunk for tests: tiny random CLIP, bundled sample rows, a few steps."""
from configs import demo


def get_config():
  config = demo.get_config()
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
  return config
