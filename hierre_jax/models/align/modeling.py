"""ALIGN (Jia et al. 2021; Hugging Face `AlignModel`) in Flax: a BERT text tower pooled at
[CLS] with a biased projection, an EfficientNet image tower (BatchNorm with running
statistics, no image projection) and a temperature (logits = cosine / temperature).

Module and parameter names mirror the Hugging Face state dict (`text_model/encoder/layer_3/
attention/self/query/kernel` <-> `text_model.encoder.layer.3.attention.self.query.weight`,
`vision_model/encoder/blocks_7/...` <-> `vision_model.encoder.blocks.7...`); with scanned
BERT layers (the default) `text_model/encoder/layer/...` stacks the layer_i on a leading
axis (EfficientNet's blocks differ in shape and stay unrolled). BatchNorm running
statistics are the `batch_stats` collection at the same paths (`convert` maps them). The
facts this follows are in ALIGN_SPEC.md (sections 2 to 4) of the project notes.
"""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from hierre_jax import errors
from hierre_jax.models import activations


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-12
  max_positions: int = 512
  type_vocab_size: int = 2
  pad_token_id: int = 0


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


@dataclasses.dataclass(frozen=True)
class AlignConfig:
  text: BertConfig
  vision: EfficientNetConfig
  projection_dim: int
  scan_layers: bool = True  # BERT's layers: one stacked, scanned layer, or unrolled layer_i
  family = "align"  # the models.FAMILIES entry (a class attribute, not a field)

  @classmethod
  def from_hf(cls, hf_config, scan_layers=True):
    """From a `transformers.AlignConfig` (defaults already applied by transformers)."""
    activations.check(hf_config)
    t, v = hf_config.text_config, hf_config.vision_config
    text = BertConfig(t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads,
                      t.intermediate_size, t.hidden_act, t.layer_norm_eps,
                      t.max_position_embeddings, t.type_vocab_size, t.pad_token_id)
    vision = EfficientNetConfig(
        v.width_coefficient, v.depth_coefficient, tuple(v.kernel_sizes), tuple(v.in_channels),
        tuple(v.out_channels), tuple(v.strides), tuple(v.num_block_repeats),
        tuple(v.expand_ratios), tuple(v.depthwise_padding), v.depth_divisor,
        v.squeeze_expansion_ratio, v.hidden_act, v.hidden_dim, v.pooling_type,
        v.batch_norm_eps, v.num_channels, v.image_size)
    return cls(text, vision, hf_config.projection_dim, scan_layers)


class SelfAttention(nn.Module):
  num_heads: int

  @nn.compact
  def __call__(self, x, mask):  # x [B, T, D], mask [B, 1, T, T] bool -> [B, T, D]
    b, t, d = x.shape
    heads = lambda name: nn.Dense(d, name=name)(x).reshape(b, t, self.num_heads, -1)
    out = jax.nn.dot_product_attention(heads("query"), heads("key"), heads("value"), mask=mask)
    return out.reshape(b, t, d)


class DenseLayerNorm(nn.Module):
  """Dense, then LayerNorm of (the result + the residual): BERT's post-LayerNorm output."""
  features: int
  eps: float

  @nn.compact
  def __call__(self, x, residual):
    return nn.LayerNorm(self.eps, name="LayerNorm")(nn.Dense(self.features, name="dense")(x)
                                                     + residual)


class Attention(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x, mask):
    c = self.config
    return DenseLayerNorm(c.hidden_size, c.layer_norm_eps, name="output")(
        SelfAttention(c.num_heads, name="self")(x, mask), x)


class Intermediate(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x):
    return _act(self.config)(
        nn.Dense(self.config.intermediate_size, name="dense")(x))


class BertLayer(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x, mask):
    c = self.config
    x = Attention(c, name="attention")(x, mask)
    return DenseLayerNorm(c.hidden_size, c.layer_norm_eps, name="output")(
        Intermediate(c, name="intermediate")(x), x)


def _layer_step(layer, x, mask):
  return layer(x, mask), None


class BertEncoder(nn.Module):
  """BERT's layers: one scanned layer whose parameters carry a leading [num_layers] axis
  (`layer/...`: XLA compiles the layer once), or `layer_0 ... layer_{L-1}` unrolled."""
  config: BertConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, x, mask):
    layer = nn.remat(BertLayer) if self.remat else BertLayer
    if self.scan:
      stack = nn.scan(_layer_step, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=nn.broadcast, length=self.config.num_layers)
      return stack(layer(self.config, name="layer"), x, mask)[0]
    for i in range(self.config.num_layers):
      x = layer(self.config, name=f"layer_{i}")(x, mask)
    return x


class BertEmbeddings(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, ids, positions):  # [B, T] each -> [B, T, D]
    c = self.config
    x = (nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(ids)
         + nn.Embed(c.max_positions, c.hidden_size, name="position_embeddings")(positions)
         + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(
             jnp.zeros_like(ids)))
    return nn.LayerNorm(c.layer_norm_eps, name="LayerNorm")(x)


class Pooler(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return jnp.tanh(nn.Dense(self.features, name="dense")(x[:, 0]))


class BertModel(nn.Module):
  config: BertConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, ids, positions, segments):
    """ids, positions, segments [B, T] (segment 0: padding; tokens attend within their own
    segment, both ways) -> every token's [B, T, D]. The pooler is not part of ALIGN's
    features; it is computed so that its parameters exist and round-trip."""
    c = self.config
    x = BertEmbeddings(c, name="embeddings")(ids, positions)
    mask = ((segments[:, None, :, None] == segments[:, None, None, :])
            & (segments[:, None, None, :] > 0))
    x = BertEncoder(c, self.remat, self.scan, name="encoder")(x, mask)
    Pooler(c.hidden_size, name="pooler")(x)  # unused by ALIGN's features; jit drops it
    return x


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


class ALIGN(nn.Module):
  """Both towers, the text projection and the temperature; features NOT normalised."""
  config: AlignConfig
  remat: bool = False

  def setup(self):
    c = self.config
    self.text_model = BertModel(c.text, self.remat, c.scan_layers)
    self.vision_model = EfficientNet(c.vision)
    self.text_projection = nn.Dense(c.projection_dim)
    self.temperature = self.param("temperature", nn.initializers.constant(1.0), ())

  def encode_text(self, ids):  # [B, T] int, padded with pad_token_id -> [B, P] at [CLS]
    valid = ids != self.config.text.pad_token_id
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    x = self.text_model(ids, positions, valid.astype(jnp.int32))
    return self.text_projection(x[:, 0])

  def encode_packed_text(self, packed):  # `packing.Packed` of S shards, N texts -> [S, N, P]
    s, r, t = packed.ids.shape
    flat = lambda x: x.reshape(s * r, t)
    x = self.text_model(flat(packed.ids), flat(packed.positions), flat(packed.segments))
    x = jnp.take_along_axis(x.reshape(s, r * t, -1), packed.ends[..., None], axis=1)
    return self.text_projection(x)

  def encode_image(self, pixels):  # [B, H, W, C] float -> [B, P]
    return self.vision_model(pixels)

  def __call__(self, ids, pixels):  # for init
    return self.encode_text(ids), self.encode_image(pixels), self.temperature


def variable_shapes(config: AlignConfig):
  """{"params", "batch_stats"} of `config` as `jax.ShapeDtypeStruct`s, without allocating
  (the shapes do not depend on the image size: a small image is enough)."""
  pixels = jnp.zeros((1, 32, 32, config.vision.num_channels), jnp.float32)
  return jax.eval_shape(ALIGN(config).init, jax.random.key(0), jnp.zeros((1, 2), jnp.int32),
                        pixels)
