"""Hugging Face model directories, whatever the family: find or download one, read its
tensors (safetensors, a sharded index or pytorch_model.bin), write one (config, weights,
the source's tokenizer files and the RE root file). The format-free tensor rules live in
`state_dicts.py`, the root file in `root_file.py`.
"""
import difflib
import json
import os
import shutil

import numpy as np
import safetensors.numpy

from hierre_jax.models import root_file
from hierre_jax.models import state_dicts

def load_hf_config(model_dir, config_class):
  """`config_class.from_pretrained(model_dir)` (a transformers config class), or
  FileNotFoundError when model_dir has no config.json."""
  if not os.path.exists(os.path.join(model_dir, "config.json")):
    raise FileNotFoundError(f"{model_dir}: config.json is missing")
  return config_class.from_pretrained(model_dir)


def declares(model_dir, architectures, model_type):
  """Whether model_dir's config.json names one of `architectures` (or, naming none, has
  `model_type`); False without a readable config.json."""
  try:
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
      hf_config = json.load(f)
  except (OSError, ValueError):
    return False
  found = hf_config.get("architectures") or []
  return bool(set(found) & set(architectures)) or (not found and
                                                   hf_config.get("model_type") == model_type)


# Checkpoints given as one file (MERU's .pth; open_clip's weights with their config beside).
CHECKPOINT_FILES = (".pth", ".pt", ".bin", ".safetensors")


def looks_local(path):
  """True for a path that cannot be a hub id ('org/name'): absolute, ./ or ../, more than
  two components, or whose first component is a local directory (a typo in 'workdirs/x')."""
  parts = path.split("/")
  return (path.startswith((".", "/", "~")) or len(parts) > 2
          or (len(parts) == 2 and os.path.isdir(parts[0])))


def resolve_model_dir(path_or_id):
  """A local directory (or checkpoint file) as is; otherwise a hub id ("org/name", or
  open_clip's "hf-hub:org/name"), downloaded (needs network): configs, tokenizer files
  (SigLIP's spiece.model too) and the weights."""
  if os.path.isdir(path_or_id) or os.path.isfile(path_or_id) and path_or_id.endswith(
      CHECKPOINT_FILES):
    return path_or_id
  if os.path.exists(path_or_id) or looks_local(path_or_id):
    parent = os.path.dirname(os.path.abspath(path_or_id))
    near = difflib.get_close_matches(os.path.basename(path_or_id),
                                     os.listdir(parent) if os.path.isdir(parent) else [], 3)
    raise FileNotFoundError(f"{path_or_id}: no such checkpoint directory"
                            + (f" (did you mean {', '.join(near)}?)" if near else ""))
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  repo = path_or_id.removeprefix("hf-hub:")  # open_clip's spelling of a hub id
  try:
    model_dir = huggingface_hub.snapshot_download(
        repo, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"])
    if not any(name.endswith(".safetensors") for name in os.listdir(model_dir)):
      model_dir = huggingface_hub.snapshot_download(  # older repos: PyTorch weights only
          repo, allow_patterns=["*.json", "*.txt", "*.model", "pytorch_model.bin",
                                "open_clip_pytorch_model.bin"])
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(f"{path_or_id}: not a local directory, and downloading it as a "
                            f"Hugging Face hub id failed ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from e
  return model_dir


def read_state_dict(model_dir, ignored=()):
  """All tensors of a checkpoint directory as float32 numpy arrays, by HF key, without the
  `ignored` keys (buffers that hold no weights)."""
  single = os.path.join(model_dir, "model.safetensors")
  index = os.path.join(model_dir, "model.safetensors.index.json")
  bin_file = os.path.join(model_dir, "pytorch_model.bin")
  if os.path.exists(single):
    tensors = state_dicts.load_safetensors(single)
  elif os.path.exists(index):
    try:
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise state_dicts.CheckpointFormatError(
          f"{index}: not a safetensors index ({type(e).__name__}: {e}); expected "
          "{\"weight_map\": {key: file}}") from None
    tensors = {}
    for name in files:
      tensors.update(state_dicts.load_safetensors(os.path.join(model_dir, name)))
  elif os.path.exists(bin_file):
    tensors = {k: v.float().numpy() for k, v in state_dicts.load_torch_file(bin_file).items()}
  else:
    raise FileNotFoundError(f"{model_dir}: no model.safetensors, model.safetensors.index.json "
                            "or pytorch_model.bin")
  return {k: np.asarray(v, np.float32) for k, v in tensors.items() if k not in ignored}


def copy_files(src_dir, out_dir, names):
  """Copies the files `names` that `src_dir` has into `out_dir` (nothing without src_dir)."""
  if not src_dir:
    return
  for name in names:
    if os.path.exists(os.path.join(src_dir, name)) and not os.path.samefile(src_dir, out_dir):
      shutil.copy(os.path.join(src_dir, name), os.path.join(out_dir, name))


def save_info(hf_config, source_dir, info_dir, files):
  """config.json of `hf_config` and the `files` of `source_dir` in `info_dir`: what reading
  a checkpoint's config, tokenizer and preprocessing needs, without the weights."""
  os.makedirs(info_dir, exist_ok=True)
  hf_config.save_pretrained(info_dir)
  copy_files(source_dir, info_dir, files)


def write_model_dir(state_dict, root, hf_config, architectures, out_dir, source_dir, files):
  """Writes a Hugging Face model directory: config.json (with `architectures`),
  model.safetensors of `state_dict`, the `files` that `source_dir` has (tokenizer,
  preprocessing), and root_file.ROOT_FILE for an RE `root` that is not the model's own empty-string
  embedding (a fixed or a trained root; None removes a stale root_file.ROOT_FILE)."""
  os.makedirs(out_dir, exist_ok=True)
  root_file.write_root(out_dir, root)
  hf_config.architectures = list(architectures)
  hf_config.save_pretrained(out_dir)
  weights = os.path.join(out_dir, "model.safetensors")
  safetensors.numpy.save_file(state_dict, weights, metadata={"format": "pt"})
  umask = os.umask(0)  # safetensors creates the file 0600; give it the usual permissions
  os.umask(umask)
  os.chmod(weights, 0o666 & ~umask)
  copy_files(source_dir, out_dir, files)
  return out_dir
