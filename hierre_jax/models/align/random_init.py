"""Random-weight ALIGN checkpoints in Hugging Face format, built without torch or a download.

Flax's default initialisers leave EfficientNet's pooled features ~1e-12 (and identical
for every image): the weights are re-drawn so that features carry signal, as ALIGN_SPEC
section 6 measured (convolutions He-scaled, BatchNorm scales, biases and running
statistics random; each block's output BatchNorm scaled down so that the activations
stay bounded through 55 blocks), and the temperature is not 1.
"""
import jax
import numpy as np
import transformers

from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
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


def redraw(variables, config, seed):
  """Variables with signal: He-scaled convolution kernels, N(0, 0.1) convolution biases,
  BatchNorm scale U(0.5, 1.5) (U(0.05, 0.15) at the end of residual blocks), bias and mean
  N(0, 0.1), var U(0.5, 1.5); temperature 0.05."""
  residual = {f"blocks_{b}" for b, block in enumerate(config.vision.blocks()) if block[5]}
  rng = np.random.default_rng(seed)
  def draw(path, x):
    names = [k.key for k in path]
    x = np.asarray(x)
    if names[0] == "batch_stats":
      return (rng.normal(0, 0.1, x.shape) if names[-1] == "mean"
              else rng.uniform(0.5, 1.5, x.shape)).astype(np.float32)
    if names[0] == "vision_model" and names[-1] == "kernel":
      return rng.normal(0, np.sqrt(2 / np.prod(x.shape[:-1])), x.shape).astype(np.float32)
    if names[0] == "vision_model" and names[-1] == "scale":
      # Residual branches small, as in trained networks: otherwise the activations grow
      # about 10x per stage (8.7e9 after EfficientNet-B7's 55 blocks), and fp32 roundoff,
      # not the port, decides the features.
      low = 0.05 if names[-2] == "project_bn" and names[-4] in residual else 0.5
      return rng.uniform(low, 3 * low, x.shape).astype(np.float32)
    if names[0] == "vision_model" and names[-1] == "bias":
      return rng.normal(0, 0.1, x.shape).astype(np.float32)
    if names == ["temperature"]:
      return np.float32(0.05)
    return x
  tree = {**variables["params"], "batch_stats": variables["batch_stats"]}
  return jax.tree_util.tree_map_with_path(draw, tree)


def write_random_align(out_dir, text, vision, projection_dim, seed=0, words=()):
  """Writes a random AlignModel (config, safetensors, a WordPiece vocabulary of `words`) to
  `out_dir`; text["vocab_size"] is set to the vocabulary's size."""
  size = tokenizer.write_vocab(out_dir, words)
  config = hf_config({**text, "vocab_size": size}, vision, projection_dim)
  flax_config = modeling.AlignConfig.from_hf(config)
  variables = modeling.init_variables(flax_config, jax.random.key(seed))
  return convert.export_align(redraw(variables, flax_config, seed), config, out_dir)
