"""Random MERU checkpoints (.pth, the release's layout) of any tower sizes, for tests and
demos: loaded back through the same code path as a released file."""
import os

import jax
import numpy as np

from hierre_jax.models.meru import checkpoint
from hierre_jax.models.meru import modeling

FILE = "meru.pth"
# A ViT-S-shaped image tower cut to two layers, and a small text tower: 2 CPU cores.
TINY_TEXT = dict(hidden_size=128, num_hidden_layers=2)
TINY_VISION = dict(hidden_size=128, num_hidden_layers=2, image_size=64, patch_size=16)


def config_of(text, vision, projection_dim, hyperbolic=True, flat=False):
  """A `MeruConfig` from HF-style size dicts (hidden_size, num_hidden_layers, optional
  num_attention_heads, and for the image tower image_size, patch_size); heads where not
  given: the release's for its widths, else one per 64 channels (recorded beside the .pth)."""
  width, text_width = vision["hidden_size"], text.get("hidden_size", 512)
  heads = lambda sizes, w, tower: (sizes.get("num_attention_heads")
                                   or modeling.release_heads(w, tower) or max(1, w // 64))
  return modeling.MeruConfig.of_sizes(
      width, vision["num_hidden_layers"], heads(vision, width, "vision"), text_width,
      text.get("num_hidden_layers", 12), heads(text, text_width, "text"), projection_dim,
      hyperbolic, vision.get("image_size", 224), vision.get("patch_size", 16), flat=flat)


def write_random_meru(out_dir, text, vision, projection_dim, seed=0, hyperbolic=True,
                      flat=False):
  """Writes out_dir/meru.pth: Flax's default initialisers (distinct inputs give distinct
  features), MERU's initial scalars (curvature 1, alphas 1/sqrt(P), scale 1/0.07), ImageNet
  pixel statistics as (3, 1, 1) buffers. `hyperbolic=False`: the release's CLIP baseline;
  `flat=True`: the hyperbolic parameters in flat space (`MeruConfig.flat`)."""
  config = config_of(text, vision, projection_dim, hyperbolic, flat)
  params = jax.tree.map(np.asarray, modeling.init_params(config, jax.random.key(seed)))
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.save(params, config, os.path.join(out_dir, FILE))
  return out_dir
