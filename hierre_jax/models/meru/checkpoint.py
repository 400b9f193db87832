"""MERU's released checkpoints (`meru_vit_{s,b,l}.pth`, and the `clip_vit_*.pth` baselines
of the same release) <-> Flax parameters, both directions.

A checkpoint is a torch pickle whose weights sit under the top-level key "model"; the
keys are those of ../shared/FAMILIES_SPEC.md 1.3 (derived from the module definitions).
Fused attention projections (the image tower's `attn.qkv`, the text tower's
`attn.in_proj_*`, rows q;k;v) are split into q/k/v on reading and fused again on writing,
so a written checkpoint holds the same tensors as the one read (bit-identical). Reading
and writing need torch; the sizes come from the tensors themselves, the attention heads
(which no .pth stores) from the `SIZES_FILE` beside it that our writer adds, else from the
release's table, else the checkpoint is refused (never guessed).
"""
import dataclasses
import json
import os

import jax
import numpy as np

from hierre_jax.common import errors
from hierre_jax.models import state_dicts
from hierre_jax.models.meru import modeling

SIZES_FILE = "meru_config.json"  # `MeruConfig.to_dict`: beside our .pth, and in model_info
SKIPPED = ("textual.attn_mask",)  # a stored buffer (the causal mask): not read, written back
HYPERBOLIC_SCALARS = ("curv", "visual_alpha", "textual_alpha")
STATIC = {
    "logit_scale": "logit_scale", "pixel_mean": "pixel_mean", "pixel_std": "pixel_std",
    "curv": "curv", "visual_alpha": "visual_alpha", "textual_alpha": "textual_alpha",
    "visual.cls_token": "visual.cls_token", "visual.pos_embed": "visual.pos_embed",
    "visual.patch_embed.proj.weight": "visual.patch_embed.kernel",
    "visual.patch_embed.proj.bias": "visual.patch_embed.bias",
    "visual.norm.weight": "visual.norm.scale", "visual.norm.bias": "visual.norm.bias",
    "textual.token_embed.weight": "textual.embeddings.token_embedding.embedding",
    "textual.posit_embed": "textual.embeddings.position_embedding.embedding",
    "textual.ln_final.weight": "textual.final_layer_norm.scale",
    "textual.ln_final.bias": "textual.final_layer_norm.bias",
    "visual_proj.weight": "visual_proj.kernel", "textual_proj.weight": "textual_proj.kernel",
}
# Per layer: (MERU module, ours) of each tower; ".weight" is a LayerNorm's scale or a
# Linear's kernel.
LAYER_MODULES = {
    "visual": ("visual.blocks", {"norm1": "layer_norm1", "norm2": "layer_norm2",
                                 "attn.proj": "self_attn.out_proj", "mlp.fc1": "mlp.fc1",
                                 "mlp.fc2": "mlp.fc2"}),
    "textual": ("textual.resblocks", {"ln_1": "layer_norm1", "ln_2": "layer_norm2",
                                      "attn.out_proj": "self_attn.out_proj",
                                      "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}),
}
FUSED = {"visual": ("attn.qkv.weight", "attn.qkv.bias"),
         "textual": ("attn.in_proj_weight", "attn.in_proj_bias")}
QKV = ("q_proj", "k_proj", "v_proj")


class NotAMeruCheckpoint(errors.UserError):
  """A .pth that is not a MERU release checkpoint."""


def key_pairs(depths, hyperbolic):
  """[(MERU key, [our dotted keys])] of a checkpoint whose towers have `depths`
  {"visual": L, "textual": L}: one key each, three (q, k, v) for a fused projection."""
  pairs = [(k, [v]) for k, v in STATIC.items()
           if hyperbolic or k not in HYPERBOLIC_SCALARS]
  for tower, (prefix, modules) in LAYER_MODULES.items():
    for i in range(depths[tower]):
      ours = f"{tower}.encoder.layers_{i}"
      for theirs, mine in modules.items():
        leaf = "scale" if mine.startswith("layer_norm") else "kernel"
        pairs.append((f"{prefix}.{i}.{theirs}.weight", [f"{ours}.{mine}.{leaf}"]))
        pairs.append((f"{prefix}.{i}.{theirs}.bias", [f"{ours}.{mine}.bias"]))
      weight, bias = FUSED[tower]
      pairs.append((f"{prefix}.{i}.{weight}", [f"{ours}.self_attn.{p}.kernel" for p in QKV]))
      pairs.append((f"{prefix}.{i}.{bias}", [f"{ours}.self_attn.{p}.bias" for p in QKV]))
  return pairs


def layer_count(keys, prefix):
  return len({k[len(prefix) + 1:].split(".")[0] for k in keys if k.startswith(prefix + ".")})


def read_state_dict(path):
  """{key: float32 numpy array} of a MERU .pth (weights under "model"); one-line errors for
  a missing torch, a file that is no torch pickle, or one without "model"."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.UserError(f"{path}: reading a .pth checkpoint needs torch (pip install "
                           "torch)") from None
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (pickle, zip and torch errors)
    raise NotAMeruCheckpoint(f"{path}: not a torch checkpoint of tensors ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:150] if str(e).strip() else ''})"
                             ) from None
  if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
    found = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise NotAMeruCheckpoint(f"{path}: no \"model\" dict of weights (a MERU release checkpoint "
                             f"holds one; found {found})")
  model = checkpoint["model"]
  if model and all(k.startswith("module.") for k in model):  # saved from a DDP wrapper
    model = {k[len("module."):]: v for k, v in model.items()}
  return {k: v.detach().float().numpy() for k, v in model.items()
          if k not in SKIPPED and hasattr(v, "detach")}


def recorded_sizes(pth):
  """The sizes recorded in SIZES_FILE beside `pth` (a dict of `MeruConfig.of_sizes`
  keywords), None where there is none."""
  path = os.path.join(os.path.dirname(os.path.abspath(pth)), SIZES_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      sizes = json.load(f)
    int(sizes["text_heads"]), int(sizes["vision_heads"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f"{path}: unreadable sizes record ({type(e).__name__}: {e})") from e
  return sizes


def heads(width, tower, recorded, pth):
  """A tower's attention heads: `recorded` (SIZES_FILE), else the release's; else a one-line
  UserError naming the file that would supply them."""
  key = "text_heads" if tower == "text" else "vision_heads"
  found = recorded[key] if recorded else modeling.release_heads(width, tower)
  if found is None:
    raise errors.UserError(
        f"{pth}: a {tower} tower of width {width} is not one of MERU's release shapes, and a "
        f".pth does not record attention heads: write them to "
        f"{os.path.join(os.path.dirname(os.path.abspath(pth)), SIZES_FILE)} ({{\"{key}\": N, "
        "...}, as hierre_jax's exports do)")
  return int(found)


def config_of(state_dict, path, scan_layers=True):
  """The `MeruConfig` whose shapes the tensors have, heads by `heads`; a SIZES_FILE beside
  `path` whose sizes differ from the tensors' is refused, naming the first."""
  try:
    width = state_dict["visual.cls_token"].shape[-1]
    text = state_dict["textual.token_embed.weight"]
    patch = state_dict["visual.patch_embed.proj.weight"].shape[-1]
    grid = int(round(np.sqrt(state_dict["visual.pos_embed"].shape[1] - 1)))
    sizes = dict(vision_width=width, vision_depth=layer_count(state_dict, "visual.blocks"),
                 text_width=text.shape[1],
                 text_depth=layer_count(state_dict, "textual.resblocks"),
                 projection_dim=state_dict["textual_proj.weight"].shape[0],
                 hyperbolic="curv" in state_dict, image_size=grid * patch, patch_size=patch,
                 vocab_size=text.shape[0], context=state_dict["textual.posit_embed"].shape[0])
  except KeyError as e:
    raise NotAMeruCheckpoint(f"{path}: no {e.args[0]} (not a MERU or MERU-release CLIP "
                             "checkpoint)") from None
  recorded = recorded_sizes(path)
  for key, value in sizes.items():
    if recorded and key in recorded and recorded[key] != value:
      raise errors.UserError(f"{os.path.join(os.path.dirname(os.path.abspath(path)), SIZES_FILE)}:"
                             f" {key}={recorded[key]!r}, but {path} holds {value!r}: the sizes "
                             "record is another checkpoint's")
  return modeling.MeruConfig.of_sizes(
      **sizes, vision_heads=heads(width, "vision", recorded, path),
      text_heads=heads(sizes["text_width"], "text", recorded, path), scan_layers=scan_layers,
      flat=bool(recorded.get("flat", False)) if recorded else False)


def state_dict_to_params(state_dict, config, source):
  """MERU state dict -> Flax parameter tree of `config` (its layer layout), every key and
  shape checked; CheckpointFormatError naming what does not match."""
  pairs = key_pairs({"visual": config.vision.num_layers, "textual": config.text.num_layers},
                    config.hyperbolic)
  missing = sorted(k for k, _ in pairs if k not in state_dict)
  unexpected = sorted(set(state_dict) - {k for k, _ in pairs})
  if missing or unexpected:
    raise state_dicts.CheckpointFormatError(
        f"{source}: the tensors do not match a MERU checkpoint of its shapes; missing "
        f"{state_dicts.key_list(missing)}; unexpected {state_dicts.key_list(unexpected)}")
  expected = _flat(modeling.param_shapes(dataclasses.replace(config, scan_layers=False)))
  tree = {}
  for theirs, ours in pairs:
    value = state_dict[theirs]
    parts = np.split(value, len(ours), axis=0) if len(ours) > 1 else [value]
    for key, part in zip(ours, parts):
      leaf = key.split(".")[-1]
      part = state_dicts.to_flax_array(leaf, part)
      want = expected[key].shape
      if key.startswith("pixel_"):  # the buffer's own layout, 3 values
        ok = part.size == 3
      else:
        ok = part.shape == want
      if not ok:
        raise state_dicts.CheckpointFormatError(
            f"{source}: {theirs} has shape {value.shape}; a MERU checkpoint of these sizes "
            f"has {want} for {key}")
      node = tree
      for name in key.split(".")[:-1]:
        node = node.setdefault(name, {})
      node[leaf] = np.array(part, np.float32, order="C")
  return state_dicts.stack_layers(tree) if config.scan_layers else tree


def params_to_state_dict(params, config):
  """Flax parameter tree (either layout) -> MERU state dict (float32 numpy, fused q;k;v)."""
  flat = {k: np.asarray(v, np.float32)
          for k, v in _flat(state_dicts.unstack_layers(params)).items()}
  pairs = key_pairs({"visual": config.vision.num_layers, "textual": config.text.num_layers},
                    config.hyperbolic)
  out = {}
  for theirs, ours in pairs:
    parts = [state_dicts.to_hf_array(key.split(".")[-1], flat[key]) for key in ours]
    out[theirs] = np.array(np.concatenate(parts) if len(parts) > 1 else parts[0], order="C")
  return out


def _flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def find_pth(path):
  """A .pth file, or the one .pth of a directory; UserError naming what is there."""
  if os.path.isfile(path):
    return path
  found = sorted(n for n in os.listdir(path) if n.endswith(".pth"))
  if len(found) != 1:
    raise errors.UserError(f"{path}: expected one .pth checkpoint, found {found or 'none'}")
  return os.path.join(path, found[0])


def load(path, scan_layers=True):
  """-> (MeruConfig, numpy parameter tree) of a MERU release .pth (or a directory of one)."""
  pth = find_pth(path)
  state_dict = read_state_dict(pth)
  config = config_of(state_dict, pth, scan_layers)
  if config.hyperbolic:
    curv = float(np.exp(state_dict["curv"]))
    if not np.isfinite(curv) or curv <= 0:
      raise errors.NonFiniteError(f"{pth}: curvature exp(curv) = {curv}: must be finite and "
                                  "positive")
  params = state_dict_to_params(state_dict, config, pth)
  state_dicts.check_finite_params(params, pth)
  return config, jax.tree.map(np.asarray, params)


def save(params, config, out_path):
  """Writes {"model": state dict} as MERU's release does -> out_path (a .pth file), and
  SIZES_FILE beside it (the heads a .pth does not hold)."""
  import torch  # pylint: disable=g-import-not-at-top
  params = dict(params)
  params.pop("root", None)
  state = {k: torch.from_numpy(v) for k, v in params_to_state_dict(params, config).items()}
  context = config.text.max_positions  # the text tower's causal mask, a stored buffer
  state["textual.attn_mask"] = torch.full((context, context), float("-inf")).triu(1)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  torch.save({"model": state}, out_path)
  with open(os.path.join(os.path.dirname(os.path.abspath(out_path)), SIZES_FILE), "w",
            encoding="utf-8") as f:  # the heads, which the .pth does not hold
    json.dump(config.to_dict(), f, indent=1)
  return out_path
