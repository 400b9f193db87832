"""open_clip state dicts <-> Hugging Face `CLIPModel` state dicts, and the files they live in.

The key rules are those of transformers' convert_clip_original_pytorch_to_hf.py
(FAMILIES_SPEC section 3): fused in_proj split into q, k, v by rows; `text_projection` and
`visual.proj` (width x embed, used as x @ P) transposed; ln_1/ln_2/ln_final/ln_pre/ln_post,
c_fc/c_proj, conv1 renamed. Weights: `open_clip_model.safetensors`, else
`open_clip_pytorch_model.bin`, else the newest `epoch_N.pt` training checkpoint
({"state_dict": ...}, keys perhaps prefixed "module.").
"""
import os
import re

import numpy as np
import safetensors.numpy

from hierre_jax.models import state_dicts

SAFETENSORS = "open_clip_model.safetensors"
PYTORCH_BIN = "open_clip_pytorch_model.bin"
EPOCH = re.compile(r"epoch_(\d+)\.pt")
LATEST = "epoch_latest.pt"
# The text tower's causal mask: a buffer, not a weight, in older files.
IGNORED = ("attn_mask",)

# (open_clip block key, HF block key) inside transformer.resblocks.{i}.
BLOCK_RENAMES = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."),
                 ("attn.out_proj.", "self_attn.out_proj."), ("mlp.c_fc.", "mlp.fc1."),
                 ("mlp.c_proj.", "mlp.fc2."))
# (open_clip key, HF key) outside the blocks; "*" marks the matrices stored transposed.
RENAMES = (("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
           ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
           ("ln_final.weight", "text_model.final_layer_norm.weight"),
           ("ln_final.bias", "text_model.final_layer_norm.bias"),
           ("*text_projection", "text_projection.weight"),
           ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
           ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
           ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
           ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
           ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
           ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
           ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
           ("*visual.proj", "visual_projection.weight"),
           ("logit_scale", "logit_scale"))
TOWERS = (("transformer.resblocks.", "text_model.encoder.layers."),
          ("visual.transformer.resblocks.", "vision_model.encoder.layers."))
QKV = ("q_proj", "k_proj", "v_proj")


def to_hf(state, source):
  """open_clip state dict -> HF CLIPModel state dict; CheckpointFormatError naming a key
  that is not of the standard CLIP class."""
  out, simple = {}, {oc.lstrip("*"): (hf, oc.startswith("*")) for oc, hf in RENAMES}
  for key, value in state.items():
    if key in IGNORED:
      continue
    if key in simple:
      hf, transposed = simple[key]
      out[hf] = value.T if transposed else value
      continue
    block = next(((oc, hf) for oc, hf in TOWERS if key.startswith(oc)), None)
    match = block and re.fullmatch(r"(\d+)\.(.+)", key[len(block[0]):])
    if not match:
      raise state_dicts.CheckpointFormatError(f"{source}: {key} is not a tensor of open_clip's "
                                        "standard CLIP class")
    prefix, rest = f"{block[1]}{match[1]}.", match[2]
    if rest.startswith("attn.in_proj_"):
      for name, part in zip(QKV, np.split(value, 3, axis=0)):
        out[f"{prefix}self_attn.{name}.{rest[len('attn.in_proj_'):]}"] = part
      continue
    renamed = next((hf + rest[len(oc):] for oc, hf in BLOCK_RENAMES if rest.startswith(oc)),
                   None)
    if renamed is None:
      raise state_dicts.CheckpointFormatError(f"{source}: {key} is not a tensor of open_clip's "
                                        "standard CLIP class")
    out[prefix + renamed] = value
  return out


def from_hf(state):
  """HF CLIPModel state dict -> open_clip state dict (the inverse of `to_hf`)."""
  simple = {hf: (oc.lstrip("*"), oc.startswith("*")) for oc, hf in RENAMES}
  out, fused = {}, {}
  for key, value in state.items():
    if key in simple:
      oc, transposed = simple[key]
      out[oc] = np.array(value.T, order="C") if transposed else value
      continue
    oc_tower, hf_tower = next((oc, hf) for oc, hf in TOWERS if key.startswith(hf))
    index, rest = re.fullmatch(r"(\d+)\.(.+)", key[len(hf_tower):]).groups()
    prefix = f"{oc_tower}{index}."
    attn = re.fullmatch(r"self_attn\.(q|k|v)_proj\.(weight|bias)", rest)
    if attn:
      fused.setdefault(f"{prefix}attn.in_proj_{attn[2]}", {})[attn[1]] = value
      continue
    out[prefix + next(oc + rest[len(hf):] for oc, hf in BLOCK_RENAMES
                      if rest.startswith(hf))] = value
  for key, parts in fused.items():
    out[key] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
  return out


def weights_file(path):
  """The weights of a directory (or a checkpoint file itself): safetensors, .bin or the
  newest epoch_N.pt; FileNotFoundError naming what was looked for."""
  if os.path.isfile(path):
    return path
  for name in (SAFETENSORS, PYTORCH_BIN):
    if os.path.exists(os.path.join(path, name)):
      return os.path.join(path, name)
  epochs = sorted((int(m[1]), n) for n in os.listdir(path) if (m := EPOCH.fullmatch(n)))
  if epochs:
    return os.path.join(path, epochs[-1][1])
  if os.path.exists(os.path.join(path, LATEST)):  # open_clip's --save-most-recent alone
    return os.path.join(path, LATEST)
  raise FileNotFoundError(f"{path}: no {SAFETENSORS}, {PYTORCH_BIN}, epoch_N.pt or {LATEST}")


def read_state(path):
  """open_clip tensors of a weights file as float32 numpy, by open_clip key."""
  if path.endswith(".safetensors"):
    tensors = state_dicts.load_safetensors(path)
  else:
    state = state_dicts.load_torch_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
      state = state["state_dict"]  # a training checkpoint (epoch_N.pt)
    if not isinstance(state, dict):
      raise state_dicts.CheckpointFormatError(f"{path}: not a state dict")
    for key, value in state.items():
      if not hasattr(value, "float"):
        raise state_dicts.CheckpointFormatError(f"{path}: state_dict[{key!r}] is a "
                                          f"{type(value).__name__}, not a tensor")
    tensors = {k.removeprefix("module."): v.float().numpy() for k, v in state.items()}
  return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def write(state, out_dir):
  """Writes open_clip's `state` as out_dir/open_clip_model.safetensors (readable by all)."""
  path = os.path.join(out_dir, SAFETENSORS)
  safetensors.numpy.save_file({k: np.array(v, order="C") for k, v in state.items()}, path,
                              metadata={"format": "pt"})
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)
  return path


def model_dir_of(path):
  """The directory of a checkpoint path (a file's folder)."""
  return os.path.dirname(path) or "." if os.path.isfile(path) else path

