"""SigLIP towers in Flax (linen), named like transformers' `SiglipModel` state dict
(FAMILIES_SPEC section 2). The encoder blocks are CLIP's (pre-LayerNorm, q/k/v/out
projections, fc1/fc2); what differs:

- text: a bidirectional encoder with NO attention mask (the pads, = eos, are attended),
  pooled at the LAST position, then `head` (Linear with bias);
- vision: a patch conv with bias, no class token, post-LayerNorm on every token, then the
  multi-head attention pooling head (a learned probe attends over the tokens with torch
  `MultiheadAttention` weights, then a residual MLP on its LayerNorm).
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from hierre_jax.common import errors
from hierre_jax.models import activations
from hierre_jax.models.clip import modeling as clip_modeling

TowerConfig = clip_modeling.TowerConfig


@dataclasses.dataclass(frozen=True)
class SiglipConfig(clip_modeling.ClipConfig):
  """Both towers' sizes; `projection_dim`: the text head's output (= the vision width)."""

  @classmethod
  def from_hf(cls, hf_config, scan_layers=True):
    """From a `transformers.SiglipConfig` (defaults applied by transformers)."""
    activations.check(hf_config)
    t, v = hf_config.text_config, hf_config.vision_config
    if not getattr(v, "vision_use_head", True):
      raise errors.UserError("config vision_config.vision_use_head=false: SigLIP's image "
                             "feature is its attention pooling head's")
    if (t.projection_size or t.hidden_size) != v.hidden_size:
      raise errors.UserError(f"config text_config.projection_size="
                             f"{t.projection_size or t.hidden_size} differs from "
                             f"vision_config.hidden_size={v.hidden_size}: the two features "
                             "must share one space")
    return cls(text=TowerConfig.from_hf(t, max_positions=t.max_position_embeddings,
                                        vocab_size=t.vocab_size),
               vision=TowerConfig.from_hf(v, image_size=v.image_size, patch_size=v.patch_size,
                                          num_channels=v.num_channels),
               projection_dim=t.projection_size or t.hidden_size, scan_layers=scan_layers)


class TextTransformer(nn.Module):
  config: TowerConfig
  projection_dim: int
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, ids, positions=None, mask=None, pool=True):
    """ids [B, T] -> [B, P]: the last position's state through `head`; with `pool=False`
    every token's [B, T, P] (final LayerNorm, then `head`). `positions`, `mask` ([B, 1, T, T]
    bool: which keys each query attends to) for packed rows; no mask otherwise."""
    c = self.config
    x = clip_modeling.TextEmbeddings(c, name="embeddings")(ids, positions)
    x = clip_modeling.Encoder(c, causal=False, remat=self.remat, scan=self.scan,
                              name="encoder")(x, mask)
    x = nn.LayerNorm(c.layer_norm_eps, name="final_layer_norm")(x)
    head = nn.Dense(self.projection_dim, name="head")
    return head(x[:, -1]) if pool else head(x)


class VisionEmbeddings(nn.Module):
  config: TowerConfig

  @nn.compact
  def __call__(self, pixels):  # [B, H, W, C] -> [B, patches, D]
    c = self.config
    p = c.patch_size
    x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding="VALID",
                name="patch_embedding")(pixels)
    x = x.reshape(x.shape[0], -1, c.hidden_size)
    return x + nn.Embed(x.shape[1], c.hidden_size, name="position_embedding")(
        jnp.arange(x.shape[1]))


class VisionTransformer(nn.Module):
  config: TowerConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, pixels, pool=True):
    """[B, H, W, C] -> the pooled [B, D] (attention pooling head), or with `pool=False`
    every patch's [B, patches, D] after the post-LayerNorm."""
    c = self.config
    x = VisionEmbeddings(c, name="embeddings")(pixels)
    x = clip_modeling.Encoder(c, causal=False, remat=self.remat, scan=self.scan,
                              name="encoder")(x)
    x = nn.LayerNorm(c.layer_norm_eps, name="post_layernorm")(x)
    return Head(c, name="head")(x) if pool else x


class Head(nn.Module):
  """`vision_model.head.*`: probe, attention (torch MultiheadAttention), layernorm, mlp."""
  config: TowerConfig

  @nn.compact
  def __call__(self, x):  # [B, N, D] -> [B, D]
    c = self.config
    b, n, d = x.shape
    probe = self.param("probe", nn.initializers.normal(1.0), (1, 1, d))
    attention = MultiheadAttention(c.num_heads, name="attention")
    out = attention(jnp.broadcast_to(probe, (b, 1, d)).astype(x.dtype), x)
    out = out + clip_modeling.Mlp(c, name="mlp")(
        nn.LayerNorm(c.layer_norm_eps, name="layernorm")(out))
    return out[:, 0]


class MultiheadAttention(nn.Module):
  """torch.nn.MultiheadAttention's weights: in_proj_weight [3D, D] (rows q; k; v),
  in_proj_bias [3D], out_proj Linear."""
  num_heads: int

  @nn.compact
  def __call__(self, query, x):  # [B, Q, D], [B, N, D] -> [B, Q, D]
    d = x.shape[-1]
    w = self.param("in_proj_weight", nn.initializers.lecun_normal(), (3 * d, d))
    bias = self.param("in_proj_bias", nn.initializers.zeros, (3 * d,))
    (wq, wk, wv), (bq, bk, bv) = jnp.split(w, 3), jnp.split(bias, 3)
    heads = lambda y: y.reshape(*y.shape[:2], self.num_heads, d // self.num_heads)
    out = jax.nn.dot_product_attention(heads(query @ wq.T + bq), heads(x @ wk.T + bk),
                                       heads(x @ wv.T + bv))
    return nn.Dense(d, name="out_proj")(out.reshape(query.shape))


class Siglip(nn.Module):
  """Both towers; features are NOT normalised here."""
  config: SiglipConfig
  remat: bool = False

  def setup(self):
    c = self.config
    self.text_model = TextTransformer(c.text, c.projection_dim, self.remat, c.scan_layers)
    self.vision_model = VisionTransformer(c.vision, self.remat, c.scan_layers)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(jnp.log(10.0)), (1,))
    self.logit_bias = self.param("logit_bias", nn.initializers.constant(-10.0), (1,))

  def encode_text(self, ids):  # [B, T] int -> [B, P]
    return self.text_model(ids)

  def encode_packed_text(self, packed):
    """`packing.Packed` of S shards, N texts each -> [S, N, P]; every text fills its
    max-length slot (the tokenizer pads each to it), attends within itself, and is pooled
    at its slot's last position."""
    return clip_modeling.packed_text_features(self.text_model, packed)

  def encode_image(self, pixels):  # [B, H, W, C] float -> [B, P]
    return self.vision_model(pixels)

  def __call__(self, ids, pixels):
    return self.encode_text(ids), self.encode_image(pixels), self.logit_scale


# Random parameters of a SiglipConfig, and their shapes (clip_modeling's, of this module).
init_params = functools.partial(clip_modeling.init_params, module=Siglip)
param_shapes = functools.partial(clip_modeling.param_shapes, module=Siglip)
