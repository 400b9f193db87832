"""Table 3 "training from scratch": a random CLIP of the CLIP-B shape (ViT-B/32 image
tower, 12-layer 512-wide text tower), lambda_p = 0, the other settings of SPEC section 3.

The SPEC keeps the fine-tuning learning rate 1e-7, at which a random tower barely moves;
configs/scratch.py (the "cpu" method row) trains a smaller tower at 5e-4. The paper does
not say which rate its row used.
"""
from configs import demo
from configs.ablations import common


def apply(config):
  config.model = ""
  config.random_init = demo.get_config().random_init
  config.random_init.seed = config.get_ref("seed")  # this run's seed, not the demo's
  config.random_init.text.update(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                 num_attention_heads=8)
  config.random_init.vision.update(hidden_size=768, intermediate_size=3072,
                                   num_hidden_layers=12, num_attention_heads=12,
                                   image_size=224, patch_size=32)
  config.random_init.projection_dim = 512
  config.lambda_p = 0.0


def get_config(scale="full"):
  return common.variant("from_scratch", apply, scale, not_from_scratch=(
      "it is the cpu 'method' row (configs/scratch.py)"))
