"""ALIGN's EfficientNet image tower in Flax (Hugging Face's `AlignVisionModel`): MBConv
blocks with BatchNorm running statistics (the `batch_stats` collection), pooled over the
final feature map; names as in the Hugging Face state dict (`vision_model/encoder/blocks_7/
...`). The facts this follows are in ALIGN_SPEC.md (sections 3 and 4)."""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from hierre_jax.common import errors
from hierre_jax.models import activations


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
  width_coefficient: float
  depth_coefficient: float
  kernel_sizes: tuple
  in_channels: tuple
  out_channels: tuple
  strides: tuple
  num_block_repeats: tuple
  expand_ratios: tuple
  depthwise_padding: tuple = ()
  depth_divisor: int = 8
  squeeze_expansion_ratio: float = 0.25
  hidden_act: str = "swish"
  hidden_dim: int = 2560  # only the pooling window: it must cover the final feature map
  pooling_type: str = "mean"
  batch_norm_eps: float = 1e-3
  num_channels: int = 3
  image_size: int = 289

  def round_filters(self, channels):
    """Channels scaled by the width coefficient, to the nearest multiple of the divisor, and
    never more than 10% below the scaled value."""
    scaled = channels * self.width_coefficient
    new = max(self.depth_divisor,
              int(scaled + self.depth_divisor / 2) // self.depth_divisor * self.depth_divisor)
    return int(new + self.depth_divisor if new < 0.9 * scaled else new)

  def blocks(self):
    """-> one (in, out, stride, kernel, expand ratio, residual, adjusted padding) per block."""
    out = []
    for i, repeats in enumerate(self.num_block_repeats):
      in_dim, out_dim = self.round_filters(self.in_channels[i]), self.round_filters(
          self.out_channels[i])
      for j in range(int(math.ceil(self.depth_coefficient * repeats))):
        stride = self.strides[i] if j == 0 else 1
        out.append((in_dim if j == 0 else out_dim, out_dim, stride, self.kernel_sizes[i],
                    self.expand_ratios[i], j > 0 and stride == 1,
                    len(out) not in self.depthwise_padding))
    return out


class MBConvBlock(nn.Module):
  """One EfficientNet block: expand 1x1 (e != 1), depthwise kxk, squeeze-excite on the block
  input width, project 1x1, residual on non-first blocks of stride 1 (dropout: eval only)."""
  config: EfficientNetConfig
  in_dim: int
  out_dim: int
  stride: int
  kernel: int
  expand_ratio: int
  residual: bool
  adjust_padding: bool

  @nn.compact
  def __call__(self, x):
    c, k = self.config, self.kernel
    h, dim = x, self.in_dim * self.expand_ratio
    if self.expand_ratio != 1:
      h = ExpandLayer(dim, c, name="expansion")(h)
    h = DepthwiseLayer(dim, k, self.stride, self.adjust_padding, c, name="depthwise_conv")(h)
    h = SqueezeExcite(dim, max(1, int(self.in_dim * c.squeeze_expansion_ratio)), c,
                      name="squeeze_excite")(h)
    h = ProjectLayer(self.out_dim, c, name="projection")(h)
    return h + x if self.residual else h


def _act(config):
  return activations.ACTIVATIONS[config.hidden_act]


def _bn(config, name):
  return nn.BatchNorm(use_running_average=True, epsilon=config.batch_norm_eps, name=name)


class ExpandLayer(nn.Module):
  dim: int
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.dim, (1, 1), use_bias=False, name="expand_conv")(x)
    return _act(self.config)(_bn(self.config, "expand_bn")(x))


class DepthwiseLayer(nn.Module):
  dim: int
  kernel: int
  stride: int
  adjust_padding: bool
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, x):
    k = self.kernel
    if self.stride == 2:  # explicit padding, then "valid": right/bottom one more when adjusted
      before = k // 2 - 1 if self.adjust_padding else k // 2
      padding = ((before, k // 2), (before, k // 2))
    else:
      padding = "SAME"
    x = DepthwiseConv(self.dim, k, self.stride, padding, name="depthwise_conv")(x)
    return _act(self.config)(_bn(self.config, "depthwise_norm")(x))


class DepthwiseConv(nn.Module):
  """One k x k filter per channel, no bias: `nn.Conv(feature_group_count=dim)`'s kernel
  [k, k, 1, dim]. On CPU computed as k^2 shifted multiply-adds: XLA's CPU grouped
  convolution is 5 to 20 times slower at EfficientNet-B7's shapes (measured 2026-11-30)."""
  dim: int
  kernel: int
  stride: int
  padding: object  # "SAME" or ((top, bottom), (left, right))

  @nn.compact
  def __call__(self, x):  # [N, H, W, dim] -> [N, H', W', dim]
    k, s = self.kernel, self.stride
    w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, self.dim))
    if jax.default_backend() != "cpu":
      return jax.lax.conv_general_dilated(x, w, (s, s), self.padding,
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                          feature_group_count=self.dim)
    pads = self.padding
    if pads == "SAME":  # stride 1 here: the output keeps the input's size
      pads = ((k // 2, k - 1 - k // 2),) * 2
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    h, v = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    out = 0
    for i in range(k):
      for j in range(k):
        out = out + x[:, i:i + s * (h - 1) + 1:s, j:j + s * (v - 1) + 1:s] * w[i, j, 0]
    return out


class SqueezeExcite(nn.Module):
  dim: int
  squeezed: int
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, x):
    s = x.mean(axis=(1, 2), keepdims=True)
    s = _act(self.config)(nn.Conv(self.squeezed, (1, 1), name="reduce")(s))
    return x * jax.nn.sigmoid(nn.Conv(self.dim, (1, 1), name="expand")(s))


class ProjectLayer(nn.Module):
  dim: int
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, x):
    return _bn(self.config, "project_bn")(
        nn.Conv(self.dim, (1, 1), use_bias=False, name="project_conv")(x))


class StemLayer(nn.Module):
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, pixels):
    c = self.config
    x = nn.Conv(c.round_filters(32), (3, 3), strides=2, padding=((0, 1), (0, 1)),
                use_bias=False, name="convolution")(pixels)
    return _act(c)(_bn(c, "batchnorm")(x))


class EfficientNetEncoder(nn.Module):
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, x):
    for b, (in_dim, out_dim, stride, kernel, expand, residual, adjust) in enumerate(
        self.config.blocks()):
      x = MBConvBlock(self.config, in_dim, out_dim, stride, kernel, expand, residual, adjust,
                      name=f"blocks_{b}")(x)
    return x


class EfficientNet(nn.Module):
  config: EfficientNetConfig

  @nn.compact
  def __call__(self, pixels):  # [B, H, W, C] -> pooled [B, C_last]
    c = self.config
    x = EfficientNetEncoder(c, name="encoder")(StemLayer(c, name="embeddings")(pixels))
    if max(x.shape[1], x.shape[2]) > c.hidden_dim:
      raise errors.UserError(
          f"images of {pixels.shape[1]}x{pixels.shape[2]} leave a {x.shape[1]}x{x.shape[2]} "
          f"EfficientNet feature map, larger than the pooling window hidden_dim={c.hidden_dim} "
          "of the vision config: use smaller images or a larger hidden_dim")
    return x.max(axis=(1, 2)) if c.pooling_type == "max" else x.mean(axis=(1, 2))
