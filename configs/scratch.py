"""Paper Table 3, "training from scratch": a randomly initialised text tower trained with the
RE loss only (lambda_p = 0), evaluated on the real HierarCaps test set.

Sized for a 2-core CPU (< 20 minutes end to end, evaluations included): a 2-layer,
256-wide text tower (4 heads, MLP 1024; the paper used the 12-layer 512-wide CLIP-B
shape) and a tiny random image tower (P and R are chance level with any random image
tower). 2000 steps of 16 rows = 1.7 epochs of the 18,770 HierarCaps COCO training rows,
AdamW at 5e-4 with warm-up and cosine decay: a from-scratch rate, not the 1e-7
fine-tuning one.

  python -m hierre_jax.train --config configs/scratch.py
"""
import ml_collections

from configs import clip_b32


def get_config():
  config = clip_b32.get_config()
  config.model = ""
  config.random_init = ml_collections.ConfigDict(dict(
      text=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77),
      vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=4, image_size=224, patch_size=32),
      projection_dim=256, seed=0))
  config.workdir = "workdirs/scratch"
  config.length_multiple = 8  # CPU: fewer FLOPs beat fewer compilations
  config.length_groups = ((0, 1), (2, 3))
  config.batch_size = 16
  config.total_steps = 2000
  config.lr = 5e-4
  config.schedule = "warmup_cosine"
  config.warmup_steps = 200
  config.weight_decay = 0.01
  config.lambda_p = 0.0  # no pretrained tower to pull back to
  config.log_every = 25
  config.checkpoint_every = 500
  return config
