"""Paper Table 3, "training from scratch": a randomly initialised text tower trained with the
RE loss only (lambda_p = 0), evaluated on the real HierarCaps test set.

Sized for a 2-core CPU (10 to 25 minutes end to end, evaluations included): a 2-layer,
256-wide text tower (4 heads, MLP 1024; the paper used the 12-layer 512-wide CLIP-B
shape) and a tiny random image tower (P and R are chance level with any random image
tower). 2000 steps of 16 rows = 1.7 epochs of the 18,770 HierarCaps COCO training rows,
AdamW at 5e-4 with warm-up and cosine decay: a from-scratch rate, not the 1e-7
fine-tuning one.

  python -m hierre_jax.train --config configs/scratch.py
"""
from configs import demo


def get_config():
  config = demo.get_config()  # random CLIP, CPU padding, warm-up + cosine schedule
  config.random_init.text.update(hidden_size=256, intermediate_size=1024)
  config.random_init.vision.update(num_hidden_layers=1, image_size=224, patch_size=32)
  config.random_init.projection_dim = 256
  config.workdir = "workdirs/scratch"
  config.batch_size = 16
  config.total_steps = 2000
  config.lr = 5e-4
  config.warmup_steps = 200
  config.lambda_p = 0.0  # no pretrained tower to pull back to
  config.log_every = 25
  config.checkpoint_every = 500
  return config
