"""MERU's towers in Flax (../shared/FAMILIES_SPEC.md 1.1 and 1.3), from the spec and the
maths: a timm-style ViT (class token, learned-layout position embeddings loaded from the
checkpoint, pre-LN blocks, final LayerNorm, class-token pooling) and the OpenAI-style
text transformer, both built from CLIP's blocks (`models.clip.modeling`: exact GELU,
LayerNorm eps 1e-5), bias-free projections, pixel normalisation inside the model.

A MERU checkpoint stores logs: curv, visual_alpha, textual_alpha and logit_scale. Its
features are alpha * projection, tangent vectors at the hyperboloid's origin, lifted by
the family's geometry (`geometry.lorentz.Lorentz(exp(curv))`); they are never clamped at
inference. The release's CLIP baselines (`clip_vit_*.pth`) have the same towers, no
curvature or alphas, and live on the sphere.
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors
from hierre_jax.models.clip import modeling as clip_modeling

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SOT, EOT = 49406, 49407

# Image tower sizes of the release (width, depth, heads); the text tower is 512/12/8 for all.
VISION_SIZES = {"s": (384, 12, 12), "b": (768, 12, 12), "l": (1024, 24, 16)}


def release_heads(width, tower):
  """Attention heads of a release tower of `width` (a .pth does not store them): ViT-S 12,
  B 12, L 16; text 8 at 512. None for any other width: heads are then never guessed."""
  if tower == "vision":
    return next((heads for w, _, heads in VISION_SIZES.values() if w == width), None)
  return 8 if width == 512 else None


@dataclasses.dataclass(frozen=True)
class MeruConfig:
  """Both towers (`clip_modeling.TowerConfig`: exact GELU, eps 1e-5), the embedding size,
  whether the checkpoint is hyperbolic (MERU) or the CLIP baseline, and the layer layout.
  `flat`: a hyperbolic checkpoint whose tangent vectors are read as points of flat R^P with
  no exponential map (the hyperbolic study's control; recorded in the sizes file only)."""
  text: clip_modeling.TowerConfig
  vision: clip_modeling.TowerConfig
  projection_dim: int = 512
  hyperbolic: bool = True
  scan_layers: bool = True
  flat: bool = False

  def __post_init__(self):
    if self.flat and not self.hyperbolic:
      raise errors.ConfigError("flat=True: the flat control reads a hyperbolic checkpoint's "
                               "tangent vectors; this one has no curvature (hyperbolic=False)")

  @classmethod
  def of_sizes(cls, vision_width, vision_depth, vision_heads, text_width=512, text_depth=12,
               text_heads=8, projection_dim=512, hyperbolic=True, image_size=224,
               patch_size=16, vocab_size=49408, context=77, scan_layers=True, flat=False):
    tower = functools.partial(clip_modeling.TowerConfig, hidden_act="gelu", layer_norm_eps=1e-5)
    return cls(tower(text_width, 4 * text_width, text_depth, text_heads,
                     max_positions=context, vocab_size=vocab_size, eos_token_id=EOT),
               tower(vision_width, 4 * vision_width, vision_depth, vision_heads,
                     image_size=image_size, patch_size=patch_size),
               projection_dim, hyperbolic, scan_layers, flat)

  def to_dict(self):
    """The sizes (`of_sizes` keywords): what a train workdir records to read its checkpoints."""
    t, v = self.text, self.vision
    return dict(vision_width=v.hidden_size, vision_depth=v.num_layers,
                vision_heads=v.num_heads, text_width=t.hidden_size, text_depth=t.num_layers,
                text_heads=t.num_heads, projection_dim=self.projection_dim,
                hyperbolic=self.hyperbolic, image_size=v.image_size, patch_size=v.patch_size,
                vocab_size=t.vocab_size, context=t.max_positions, flat=self.flat)


class VisionTransformer(nn.Module):
  """timm's ViT as MERU builds it: patch conv with bias, class token, position embeddings,
  pre-LN blocks, the final LayerNorm, the class token."""
  config: clip_modeling.TowerConfig
  remat: bool = False
  scan: bool = True

  @nn.compact
  def __call__(self, pixels, pool=True):  # [B, H, W, 3] normalised -> [B, D] or [B, 1 + HW, D]
    c = self.config
    p = c.patch_size
    x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(
        pixels)
    x = x.reshape(x.shape[0], -1, c.hidden_size)
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, c.hidden_size))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, c.hidden_size)), x], axis=1)
    x = x + self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], c.hidden_size))
    x = clip_modeling.Encoder(c, causal=False, remat=self.remat, scan=self.scan,
                              name="encoder")(x)
    return nn.LayerNorm(c.layer_norm_eps, name="norm")(x[:, 0] if pool else x)


class MERU(nn.Module):
  """Both towers with their bias-free projections; the stored scalars and pixel statistics
  sit beside them in the parameter tree (`scalars`), used by `encoders`."""
  config: MeruConfig
  remat: bool = False

  def setup(self):
    c = self.config
    self.textual = clip_modeling.TextTransformer(c.text, self.remat, c.scan_layers)
    self.visual = VisionTransformer(c.vision, self.remat, c.scan_layers)
    self.textual_proj = nn.Dense(c.projection_dim, use_bias=False)
    self.visual_proj = nn.Dense(c.projection_dim, use_bias=False)

  def encode_text(self, ids):  # [B, T] int -> [B, P]
    return self.textual_proj(self.textual(ids))

  def encode_packed_text(self, packed):  # `packing.Packed` of S shards, N texts -> [S, N, P]
    return self.textual_proj(clip_modeling.packed_text_features(self.textual, packed))

  def encode_image(self, pixels):  # [B, H, W, 3] normalised -> [B, P]
    return self.visual_proj(self.visual(pixels))

  def __call__(self, ids, pixels):
    return self.encode_text(ids), self.encode_image(pixels)


TOWERS = ("textual", "visual", "textual_proj", "visual_proj")


def scalars(config):
  """The stored scalars at MERU's initial values (logs: curvature 1, alphas 1/sqrt(P), logit
  scale 1/0.07) and ImageNet pixel statistics as (3, 1, 1) buffers."""
  out = {"logit_scale": np.float32(np.log(1 / 0.07)),
         "pixel_mean": np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1),
         "pixel_std": np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)}
  if config.hyperbolic:
    alpha = np.float32(np.log(config.projection_dim ** -0.5))
    out.update(curv=np.float32(0.0), visual_alpha=alpha, textual_alpha=alpha)
  return {k: np.asarray(v) for k, v in out.items()}


def encoders(config, remat=False):
  """(text, packed text, image) functions of the whole parameter tree -> tangent vectors
  alpha * projection (a hyperbolic checkpoint) or projections (a CLIP baseline); pixels in
  [0, 1], normalised here by the stored statistics."""
  model = MERU(config, remat)
  def tower(method, alpha):
    def fn(params, x):
      out = model.apply({"params": {k: params[k] for k in TOWERS if k in params}}, x,
                        method=method)
      return out * jnp.exp(params[alpha]) if config.hyperbolic else out
    return fn
  def normalised(params, pixels):
    return (pixels - params["pixel_mean"].reshape(-1)) / params["pixel_std"].reshape(-1)
  image = tower(MERU.encode_image, "visual_alpha")
  return (tower(MERU.encode_text, "textual_alpha"), tower(MERU.encode_packed_text, "textual_alpha"),
          lambda params, pixels: image(params, normalised(params, pixels)))


def init_params(config: MeruConfig, rng):
  """Random tower parameters (Flax default initialisers, without running the towers) and
  the initial scalars of `config`."""
  v = config.vision
  ids = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  pixels = jax.ShapeDtypeStruct((1, v.image_size, v.image_size, 3), jnp.float32)
  return {**MERU(config).lazy_init(rng, ids, pixels)["params"], **scalars(config)}


def param_shapes(config: MeruConfig):
  return jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))
