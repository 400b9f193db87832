"""CLIP text and vision towers in Flax (linen), named like Hugging Face's CLIPModel.

Module and parameter names mirror the Hugging Face state dict (``text_model/
encoder/layers_0/self_attn/q_proj/kernel`` <-> ``text_model.encoder.layers.0.
self_attn.q_proj.weight``) so that `convert` converts by rule; with
scanned layers (the default) ``encoder/layers/...`` stacks the layers_i on a leading axis.
Sizes and the activation come from the checkpoint's config (`TowerConfig`).
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from hierre_jax.models import activations

# Hugging Face's legacy OpenAI configs say eos_token_id == 2; the end-of-text
# position is then the argmax of the ids (49407 is the largest id).
LEGACY_EOS_TOKEN_ID = 2


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """Sizes of one tower; `vocab_size`/`eos_token_id` for text, `image_size`/`patch_size` for vision."""
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  max_positions: int = 77
  vocab_size: int = 49408
  eos_token_id: int = 49407
  image_size: int = 224
  patch_size: int = 32
  num_channels: int = 3

  @classmethod
  def from_hf(cls, c, **sizes):
    """One tower of a transformers config (text_config or vision_config), with the `sizes`
    particular to the tower (vocab_size, image_size, ...)."""
    return cls(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
               num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
               hidden_act=c.hidden_act, layer_norm_eps=c.layer_norm_eps, **sizes)


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """Both towers' sizes; `scan_layers`: the parameter layout of the encoder layers (one
  stacked, scanned layer, or unrolled layers_i; see `Encoder`)."""
  text: TowerConfig
  vision: TowerConfig
  projection_dim: int
  scan_layers: bool = True

  @classmethod
  def from_hf(cls, hf_config, scan_layers=True):
    """From a `transformers.CLIPConfig` (defaults already applied by transformers)."""
    activations.check(hf_config)
    t, v = hf_config.text_config, hf_config.vision_config
    text = TowerConfig.from_hf(t, max_positions=t.max_position_embeddings,
                               vocab_size=t.vocab_size, eos_token_id=t.eos_token_id)
    vision = TowerConfig.from_hf(v, image_size=v.image_size, patch_size=v.patch_size,
                                 num_channels=v.num_channels)
    return cls(text=text, vision=vision, projection_dim=hf_config.projection_dim,
               scan_layers=scan_layers)


class Attention(nn.Module):
  num_heads: int
  causal: bool

  @nn.compact
  def __call__(self, x, mask=None):  # x: [B, T, D], mask: None or [B, 1, T, T] -> [B, T, D]
    b, t, d = x.shape
    heads = lambda name: nn.Dense(d, name=name)(x).reshape(b, t, self.num_heads, -1)
    out = jax.nn.dot_product_attention(
        heads("q_proj"), heads("k_proj"), heads("v_proj"), mask=mask, is_causal=self.causal)
    return nn.Dense(d, name="out_proj")(out.reshape(b, t, d))


class Mlp(nn.Module):
  config: TowerConfig

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.config.intermediate_size, name="fc1")(x)
    x = activations.ACTIVATIONS[self.config.hidden_act](x)
    return nn.Dense(self.config.hidden_size, name="fc2")(x)


class EncoderLayer(nn.Module):
  """Pre-LayerNorm transformer block."""
  config: TowerConfig
  causal: bool

  @nn.compact
  def __call__(self, x, mask=None):
    eps = self.config.layer_norm_eps
    x = x + Attention(self.config.num_heads, self.causal, name="self_attn")(
        nn.LayerNorm(eps, name="layer_norm1")(x), mask)
    return x + Mlp(self.config, name="mlp")(nn.LayerNorm(eps, name="layer_norm2")(x))


def _layer_step(layer, x, mask):
  return layer(x, mask), None


class Encoder(nn.Module):
  """The stack of layers: one scanned layer whose parameters carry a leading [num_layers]
  axis (`layers/...`: XLA compiles the layer once), or `layers_0 ... layers_{L-1}`
  unrolled (`scan=False`)."""
  config: TowerConfig
  causal: bool
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, x, mask=None):  # x: [B, T, D], mask: None or [B, 1, T, T] bool
    layer = nn.remat(EncoderLayer) if self.remat else EncoderLayer
    if self.scan:
      stack = nn.scan(_layer_step, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=nn.broadcast, length=self.config.num_layers)
      return stack(layer(self.config, self.causal, name="layers"), x, mask)[0]
    for i in range(self.config.num_layers):
      x = layer(self.config, self.causal, name=f"layers_{i}")(x, mask)
    return x


def end_of_text_position(ids, eos_token_id):
  """[B, T] int ids -> [B] index of the end-of-text token (SPEC section 1)."""
  if eos_token_id == LEGACY_EOS_TOKEN_ID:  # array methods: numpy (host) or jax ids
    return ids.argmax(axis=-1)
  return (ids == eos_token_id).argmax(axis=-1)


class TextEmbeddings(nn.Module):
  config: TowerConfig

  @nn.compact
  def __call__(self, ids, positions=None):  # [B, T] (and [B, T] positions) -> [B, T, D]
    c = self.config
    tokens = nn.Embed(c.vocab_size, c.hidden_size, name="token_embedding")(ids)
    positions = jnp.arange(ids.shape[1]) if positions is None else positions
    return tokens + nn.Embed(c.max_positions, c.hidden_size, name="position_embedding")(
        positions)


class TextTransformer(nn.Module):
  config: TowerConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, ids, positions=None, mask=None, pool=True):
    """ids [B, T] -> pooled [B, D] at each row's end-of-text token, or with `pool=False`
    every token's [B, T, D] after the final LayerNorm. `positions` [B, T] (packed texts,
    `hierre_jax.data.packing`); `mask` None or [B, 1, T, T] bool: which keys each query
    may attend to, on top of the causal mask."""
    c = self.config
    x = TextEmbeddings(c, name="embeddings")(ids, positions)
    x = Encoder(c, causal=True, remat=self.remat, scan=self.scan, name="encoder")(x, mask)
    x = nn.LayerNorm(c.layer_norm_eps, name="final_layer_norm")(x)
    if not pool:
      return x
    return x[jnp.arange(ids.shape[0]), end_of_text_position(ids, c.eos_token_id)]


def packed_text_features(text_model, packed):
  """A `TextTransformer` over a `packing.Packed` of S shards, N texts each -> [S, N, D], each
  text attending only within itself and pooled at its own end-of-text token."""
  s, r, t = packed.ids.shape
  flat = lambda x: x.reshape(s * r, t)
  segments = flat(packed.segments)
  same_text = segments[:, None, :, None] == segments[:, None, None, :]
  x = text_model(flat(packed.ids), flat(packed.positions), same_text, pool=False)
  return jnp.take_along_axis(x.reshape(s, r * t, -1), packed.ends[..., None], axis=1)


class VisionEmbeddings(nn.Module):
  config: TowerConfig

  @nn.compact
  def __call__(self, pixels):  # [B, H, W, C] -> [B, 1 + patches, D]
    c = self.config
    p = c.patch_size
    x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding="VALID", use_bias=False,
                name="patch_embedding")(pixels)
    x = x.reshape(x.shape[0], -1, c.hidden_size)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (c.hidden_size,))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, c.hidden_size)), x], axis=1)
    positions = nn.Embed(x.shape[1], c.hidden_size, name="position_embedding")(
        jnp.arange(x.shape[1]))
    return x + positions


class VisionTransformer(nn.Module):
  config: TowerConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, pixels, pool=True):
    """[B, H, W, C] -> the class token [B, D] after the post-LayerNorm, or with
    `pool=False` every token's [B, 1 + patches, D] through it (DCSM_SPEC section 2)."""
    c = self.config
    x = VisionEmbeddings(c, name="embeddings")(pixels)
    x = nn.LayerNorm(c.layer_norm_eps, name="pre_layrnorm")(x)  # sic, as in HF
    x = Encoder(c, causal=False, remat=self.remat, scan=self.scan, name="encoder")(x)
    return nn.LayerNorm(c.layer_norm_eps, name="post_layernorm")(x[:, 0] if pool else x)


class CLIP(nn.Module):
  """Both towers with their projections; features are NOT normalised here."""
  config: ClipConfig
  remat: bool = False

  def setup(self):
    c = self.config
    self.text_model = TextTransformer(c.text, self.remat, c.scan_layers)
    self.vision_model = VisionTransformer(c.vision, self.remat, c.scan_layers)
    self.text_projection = nn.Dense(c.projection_dim, use_bias=False)
    self.visual_projection = nn.Dense(c.projection_dim, use_bias=False)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(2.6592), ())

  def encode_text(self, ids):  # [B, T] int -> [B, P]
    return self.text_projection(self.text_model(ids))

  def encode_packed_text(self, packed):  # `packing.Packed` of S shards, N texts each -> [S, N, P]
    return self.text_projection(packed_text_features(self.text_model, packed))

  def encode_image(self, pixels):  # [B, H, W, C] float -> [B, P]
    return self.visual_projection(self.vision_model(pixels))

  def encode_text_tokens(self, ids, attention_mask):
    """[B, T] ids and their [B, T] mask (1: a token, 0: padding) -> every position's
    projected feature [B, T, P]; padding positions attend to the texts' tokens only."""
    keys = attention_mask.astype(bool)[:, None, None, :]
    return self.text_projection(self.text_model(ids, mask=keys, pool=False))

  def encode_image_tokens(self, pixels):  # [B, H, W, C] -> [B, 1 + patches, P]
    return self.visual_projection(self.vision_model(pixels, pool=False))

  def __call__(self, ids, pixels):
    return self.encode_text(ids), self.encode_image(pixels), self.logit_scale


def init_params(config: ClipConfig, rng, module=None):
  """Random parameters (Flax default initialisers) for `config` of `module` (a dual encoder
  class called with (ids, pixels); default CLIP): `lazy_init`, which draws the same values as
  `init` without running the towers (a third to a half faster)."""
  v = config.vision
  ids = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  pixels = jax.ShapeDtypeStruct((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
  return (module or CLIP)(config).lazy_init(rng, ids, pixels)["params"]


def param_shapes(config: ClipConfig, module=None):
  """The parameter tree of `config` as `jax.ShapeDtypeStruct`s, without allocating."""
  return jax.eval_shape(functools.partial(init_params, config, module=module),
                        jax.random.key(0))
