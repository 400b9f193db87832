"""A PyTorch MERU written here from ../shared/FAMILIES_SPEC.md section 1 (not from MERU's
code), the reference of tests/test_meru.py and benchmarks/meru_towers.py: a ViT with the
module names and maths of timm's `VisionTransformer` as MERU builds it, an OpenAI-style
text transformer, bias-free projections, the stored log-scalars. It loads a
release-layout state dict strictly; the float64 hyperboloid formulas of the spec are here
too.

timm itself cannot be imported beside the CPU build of torch the project pins: it needs
torchvision, whose wheels import only beside a CUDA build of torch (5.5 GB). `timm_twin_of`
puts timm's own `VisionTransformer`, built with MERU's options, in place of the image
tower where timm imports (`launch/reference_parity.sh` makes such an environment).
"""
import numpy as np
import torch

nn = torch.nn


class PatchEmbed(nn.Module):
  def __init__(self, width, patch_size):
    super().__init__()
    self.proj = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=True)

  def forward(self, x):  # [B, 3, H, W] -> [B, HW, D]
    return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
  """Fused qkv (rows q;k;v), scaled dot product over heads, output projection."""

  def __init__(self, width, heads):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(width, 3 * width, bias=True)
    self.proj = nn.Linear(width, width)

  def forward(self, x):
    b, t, d = x.shape
    q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / np.sqrt(d // self.heads)).softmax(dim=-1)
    return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
  def __init__(self, width):
    super().__init__()
    self.fc1, self.act, self.fc2 = nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
  def __init__(self, width, heads):
    super().__init__()
    self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-5), nn.LayerNorm(width, eps=1e-5)
    self.attn, self.mlp = Attention(width, heads), Mlp(width)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
  """The ViT MERU builds with timm: class token, position embeddings added to [cls;
  patches], pre-LN blocks, the final LayerNorm (eps 1e-5), the class token out."""

  def __init__(self, width, depth, heads, image_size, patch_size):
    super().__init__()
    self.patch_embed = PatchEmbed(width, patch_size)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
    self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2 + 1, width))
    self.blocks = nn.ModuleList([Block(width, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(width, eps=1e-5)

  def forward(self, pixels):
    x = self.patch_embed(pixels)
    x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
    for block in self.blocks:
      x = block(x)
    return self.norm(x)[:, 0]


class TextBlock(nn.Module):
  def __init__(self, width, heads):
    super().__init__()
    self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
    self.attn = nn.MultiheadAttention(width, heads)
    self.mlp = nn.Sequential()
    self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
    self.mlp.add_module("gelu", nn.GELU())
    self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

  def forward(self, x, mask):  # [T, B, D] (MultiheadAttention's layout)
    h = self.ln_1(x)
    x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + self.mlp(self.ln_2(x))


class TextTower(nn.Module):
  def __init__(self, width, depth, heads, vocab=49408, context=77):
    super().__init__()
    self.token_embed = nn.Embedding(vocab, width)
    self.posit_embed = nn.Parameter(torch.zeros(context, width))
    self.resblocks = nn.ModuleList([TextBlock(width, heads) for _ in range(depth)])
    self.ln_final = nn.LayerNorm(width)
    self.register_buffer("attn_mask", torch.full((context, context), float("-inf")).triu(1))

  def forward(self, ids):  # [B, T] right-padded with 0 -> [B, D] at EOT (the largest id)
    t = ids.shape[1]
    x = (self.token_embed(ids) + self.posit_embed[:t]).transpose(0, 1)
    for block in self.resblocks:
      x = block(x, self.attn_mask[:t, :t])
    x = self.ln_final(x.transpose(0, 1))
    return x[torch.arange(len(ids)), ids.argmax(dim=-1)]


class Twin(nn.Module):
  """Keys exactly those of a release checkpoint (FAMILIES_SPEC 1.3)."""

  def __init__(self, vision, text_width, text_depth, text_heads, projection_dim, hyperbolic):
    super().__init__()
    self.visual = VisionTower(**vision)
    self.textual = TextTower(text_width, text_depth, text_heads)
    self.visual_proj = nn.Linear(vision["width"], projection_dim, bias=False)
    self.textual_proj = nn.Linear(text_width, projection_dim, bias=False)
    self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07)))
    self.hyperbolic = hyperbolic
    if hyperbolic:
      self.curv = nn.Parameter(torch.tensor(0.0))
      self.visual_alpha = nn.Parameter(torch.tensor(np.log(projection_dim ** -0.5)))
      self.textual_alpha = nn.Parameter(torch.tensor(np.log(projection_dim ** -0.5)))
    self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1))
    self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1))

  def encode_image(self, pixels):  # [B, 3, H, W] in [0, 1] -> tangent vectors [B, P]
    x = self.visual_proj(self.visual((pixels - self.pixel_mean) / self.pixel_std))
    return x * self.visual_alpha.exp() if self.hyperbolic else x

  def encode_text(self, ids):
    x = self.textual_proj(self.textual(ids))
    return x * self.textual_alpha.exp() if self.hyperbolic else x


def twin_of(state_dict, config, image_tower=None):
  """A Twin of `config` (a hierre_jax MeruConfig) with `state_dict` loaded strictly;
  `image_tower`: another module in place of VisionTower (the same keys)."""
  v, t = config.vision, config.text
  twin = Twin(dict(width=v.hidden_size, depth=v.num_layers, heads=v.num_heads,
                   image_size=v.image_size, patch_size=v.patch_size),
              t.hidden_size, t.num_layers, t.num_heads, config.projection_dim, config.hyperbolic)
  if image_tower is not None:
    twin.visual = image_tower
  twin.load_state_dict(state_dict, strict=True)
  return twin.eval().double()


def timm_twin_of(state_dict, config):
  """twin_of with timm's VisionTransformer as MERU builds it (FAMILIES_SPEC 1.1: class-token
  pooling after nn.LayerNorm's eps 1e-5, qkv and patch biases, exact GELU, MLP 4x, the
  position embeddings a loaded parameter). Needs timm (and so torchvision)."""
  import functools  # pylint: disable=g-import-not-at-top
  from timm.models import vision_transformer  # pylint: disable=g-import-not-at-top
  v = config.vision
  tower = vision_transformer.VisionTransformer(
      img_size=v.image_size, patch_size=v.patch_size, embed_dim=v.hidden_size,
      depth=v.num_layers, num_heads=v.num_heads, mlp_ratio=4.0, qkv_bias=True,
      class_token=True, global_pool="token", num_classes=0,
      norm_layer=functools.partial(nn.LayerNorm, eps=1e-5))
  return twin_of(state_dict, config, tower)


# The hyperboloid in float64, from the spec's formulas (1.2), on numpy arrays.
def time64(x, c):
  return np.sqrt(1 / c + np.sum(x * x, -1))


def exp_map0_64(v, c):
  s = np.sqrt(c) * np.linalg.norm(v, axis=-1, keepdims=True)
  return np.sinh(s) * v / s


def log_map0_64(x, c):
  n = np.linalg.norm(x, axis=-1, keepdims=True)
  return np.arccosh(np.sqrt(1 + c * n ** 2)) * x / (np.sqrt(c) * n)


def dist64(x, y, c):
  return np.arccosh(-c * (np.sum(x * y, -1) - time64(x, c) * time64(y, c))) / np.sqrt(c)


def half_aperture64(x, c, k=0.1):
  return np.arcsin(np.minimum(1.0, 2 * k / (np.sqrt(c) * np.linalg.norm(x, axis=-1))))


def oxy_angle64(x, y, c):
  x_t, y_t = time64(x, c), time64(y, c)
  c_xy = c * (np.sum(x * y, -1) - x_t * y_t)
  return np.arccos((y_t + c_xy * x_t) / (np.linalg.norm(x, axis=-1) * np.sqrt(c_xy ** 2 - 1)))
