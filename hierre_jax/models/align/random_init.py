"""Random-weight ALIGN checkpoints in Hugging Face format, built without torch or a download.

Every variable is drawn in numpy from the model's shapes (no initialisation to compile),
so that features carry signal, as ALIGN_SPEC section 6 measured: convolutions He-scaled,
BatchNorm scales, biases and running statistics random, each residual block's output
BatchNorm scaled down so that the activations stay bounded through 55 blocks; the BERT
tower LeCun-scaled (N(0, 0.02) as transformers draws it leaves every text's features
within 1e-4 of each other), with non-trivial LayerNorms and biases, so that a mis-mapped
parameter shows; and a temperature that is not 1.
"""
import jax
import numpy as np
import transformers

from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
from hierre_jax.models.align import preprocessing
from hierre_jax.models.align import tokenizer

# A tiny configuration that runs every code path of the towers (ALIGN_SPEC section 6):
# expand ratios 1 and 6, kernels 3 and 5, stride 2 with both, residual blocks.
TINY_VISION = dict(width_coefficient=0.5, depth_coefficient=1.5, kernel_sizes=[3, 3, 5, 3],
                   in_channels=[32, 16, 24, 40], out_channels=[16, 24, 40, 80],
                   strides=[1, 2, 2, 2], num_block_repeats=[1, 2, 2, 1],
                   expand_ratios=[1, 6, 6, 6], depthwise_padding=[], hidden_dim=64,
                   image_size=45)


def hf_config(text, vision, projection_dim):
  return transformers.AlignConfig(text_config=dict(text), vision_config=dict(vision),
                                  projection_dim=projection_dim)


def draw(shapes, config, seed):
  """numpy variables of `shapes` (`modeling.variable_shapes`), one parameter tree with
  `batch_stats` beside the groups: convolution kernels He-scaled, dense kernels and
  embeddings N(0, 1 / fan-in); BatchNorm scale U(0.5, 1.5) (U(0.05, 0.15) at the end of residual
  blocks), LayerNorm scale 1 + N(0, 0.1); biases, BatchNorm mean N(0, 0.1), var
  U(0.5, 1.5); temperature 0.05."""
  residual = {f"blocks_{b}" for b, block in enumerate(config.vision.blocks()) if block[5]}
  rng = np.random.default_rng(seed)
  def leaf(path, x):
    names = [k.key for k in path]
    if names[0] == "batch_stats":
      value = (rng.normal(0, 0.1, x.shape) if names[-1] == "mean"
               else rng.uniform(0.5, 1.5, x.shape))
    elif names == ["temperature"]:
      value = np.full(x.shape, 0.05)
    elif names[-1] == "bias":
      value = rng.normal(0, 0.1, x.shape)
    elif names[0] == "vision_model" and names[-1] == "kernel" and len(x.shape) == 4:
      value = rng.normal(0, np.sqrt(2 / np.prod(x.shape[:-1])), x.shape)
    elif names[0] == "vision_model" and names[-1] == "scale":
      # Residual branches small, as in trained networks: otherwise the activations grow
      # about 10x per stage (8.7e9 after EfficientNet-B7's 55 blocks), and fp32 roundoff,
      # not the port, decides the features.
      low = 0.05 if names[-2] == "project_bn" and names[-4] in residual else 0.5
      value = rng.uniform(low, 3 * low, x.shape)
    elif names[-1] == "scale":
      value = 1 + rng.normal(0, 0.1, x.shape)
    elif names[-1] == "embedding":
      value = rng.normal(0, 1 / np.sqrt(x.shape[-1]), x.shape)
    else:  # dense kernels [in, out]
      value = rng.normal(0, 1 / np.sqrt(np.prod(x.shape[:-1])), x.shape)
    return value.astype(np.float32)
  tree = {**shapes["params"], "batch_stats": shapes["batch_stats"]}
  return jax.tree_util.tree_map_with_path(leaf, tree)


def write_random_align(out_dir, text, vision, projection_dim, seed=0, words=None):
  """Writes a random AlignModel (config, safetensors, a WordPiece vocabulary of `words`
  (default: those of the bundled HierarCaps sample, `tokenizer.write_vocab`),
  and align-base's preprocessing scaled to vision["image_size"]: resize to 346/289 of it,
  centre crop to it) to `out_dir`; text["vocab_size"] is set to the vocabulary's size."""
  size = tokenizer.write_vocab(out_dir, words)
  crop = vision.get("image_size", 289)
  resize = round(crop * 346 / 289)
  preprocessing.Preprocessing(height=resize, width=resize, crop=crop).write_hf_config(out_dir)
  config = hf_config({**text, "vocab_size": size}, vision, projection_dim)
  flax_config = modeling.AlignConfig.from_hf(config, scan_layers=False)  # one draw per layer
  params = draw(modeling.variable_shapes(flax_config), flax_config, seed)
  return convert.export_align(params, config, out_dir)
