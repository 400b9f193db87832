"""ALIGN (Jia et al. 2021; Hugging Face `AlignModel`) in Flax: a BERT text tower pooled at
[CLS] with a biased projection, an EfficientNet image tower (`efficientnet.py`: BatchNorm
with running statistics, no image projection) and a temperature (logits = cosine /
temperature).

Module and parameter names mirror the Hugging Face state dict (`text_model/encoder/layer_3/
attention/self/query/kernel` <-> `text_model.encoder.layer.3.attention.self.query.weight`,
`vision_model/encoder/blocks_7/...` <-> `vision_model.encoder.blocks.7...`); with scanned
BERT layers (the default) `text_model/encoder/layer/...` stacks the layer_i on a leading
axis (EfficientNet's blocks differ in shape and stay unrolled). BatchNorm running
statistics are the `batch_stats` collection at the same paths (`convert` maps them). The
facts this follows are in ALIGN_SPEC.md (sections 2 to 4) of the project notes.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from hierre_jax.models import activations
from hierre_jax.models.align.efficientnet import EfficientNet, EfficientNetConfig


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
class AlignConfig:
  text: BertConfig
  vision: EfficientNetConfig
  projection_dim: int
  scan_layers: bool = True  # BERT's layers: one stacked, scanned layer, or unrolled layer_i

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
    return activations.ACTIVATIONS[self.config.hidden_act](
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
