"""Hugging Face model directories, whatever the family: find or download one, read its
tensors (safetensors, a sharded index or pytorch_model.bin), the layout rules shared by
every family (Linear and Conv transposes, stacked layers), checks, and the RE root file
that a model trained with a root of its own carries beside its weights.
"""
import difflib
import json
import os
import re
import shutil

import jax
import numpy as np
import safetensors.numpy

from hierre_jax import errors

# The RE root of a model whose root is not its own empty-string embedding (a fixed or a
# trained root, SPEC section 6), beside the Hugging Face files: {"root": [P floats]}.
ROOT_FILE = "re_root.json"
ROOT_ABOUT = ("hierre_jax: the RE root of this model (the point genericness is measured "
              "from); use it in place of the embedding of the empty string")


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
    tensors = load_safetensors(single)
  elif os.path.exists(index):
    try:
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise CheckpointFormatError(f"{index}: not a safetensors index ({type(e).__name__}: "
                                  f"{e}); expected {{\"weight_map\": {{key: file}}}}") from None
    tensors = {}
    for name in files:
      tensors.update(load_safetensors(os.path.join(model_dir, name)))
  elif os.path.exists(bin_file):
    tensors = {k: v.float().numpy() for k, v in load_torch_file(bin_file).items()}
  else:
    raise FileNotFoundError(f"{model_dir}: no model.safetensors, model.safetensors.index.json "
                            "or pytorch_model.bin")
  return {k: np.asarray(v, np.float32) for k, v in tensors.items() if k not in ignored}


class CheckpointFormatError(errors.UserError):
  """A checkpoint file that cannot be read, or whose tensors do not fit the model."""


def load_torch_file(path):
  """torch.load of a PyTorch file of tensors (weights_only); ImportError without torch,
  CheckpointFormatError naming a file that cannot be read."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"{path}: reading a PyTorch file needs torch (pip install "
                      "'hierre_jax[torch]'), or convert it to safetensors") from e
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointFormatError(f"{path}: cannot read this PyTorch file (truncated or corrupt? "
                                f"{type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e


def load_safetensors(path):
  """{key: numpy array} of a safetensors file; CheckpointFormatError naming a file that is
  truncated or not safetensors."""
  try:
    return safetensors.numpy.load_file(path)
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError and OSError)
    lines = str(e).strip().splitlines()
    raise CheckpointFormatError(f"{path}: cannot read this safetensors file (truncated or "
                                f"corrupt? {type(e).__name__}: {lines[0][:200] if lines else ''})"
                                ) from e


def key_list(keys, limit=5):
  """'N: [a, b, ...]' of sorted `keys`, at most `limit` of them shown."""
  return f"{len(keys)} {keys[:limit]}{' ...' if len(keys) > limit else ''}"


def tree_from_state_dict(state_dict, expected, key_to_path, source, model):
  """HF state dict -> nested dict at `key_to_path(key, ndim)`, in Flax layout, each key and
  shape checked against `expected` ({HF key: Flax-layout shape} of `model`, e.g. "a
  CLIPModel"); CheckpointFormatError naming what does not match."""
  missing = sorted(set(expected) - set(state_dict))
  unexpected = sorted(set(state_dict) - set(expected))
  if missing or unexpected:
    raise CheckpointFormatError(
        f"{source}: the tensors do not match {model} of its config.json; missing "
        f"{key_list(missing)}; unexpected {key_list(unexpected)}")
  tree = {}
  for key, value in state_dict.items():
    path = key_to_path(key, value.ndim)
    value = to_flax_array(path[-1], value)
    if value.shape != expected[key]:
      raise CheckpointFormatError(f"{source}: {key} has shape {value.shape} in Flax layout, "
                                  f"config expects {expected[key]}")
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return tree


def to_flax_array(leaf, value):
  """HF tensor -> Flax layout: Linear (out, in) -> (in, out); Conv OIHW -> HWIO."""
  if leaf == "kernel" and value.ndim == 2:
    return value.T
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  return value


def to_hf_array(leaf, value):
  if leaf == "kernel" and value.ndim == 2:
    return value.T
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  return value


def stack_layers(tree, name="layers"):
  """Unrolled `{name}_0 ... {name}_{L-1}` subtrees (of each encoder) -> one `name`
  subtree, every leaf stacked on a new leading [L] axis (the scanned layout)."""
  if not isinstance(tree, dict):
    return tree
  unrolled = re.compile(rf"{name}_\d+")
  count = sum(1 for k in tree if unrolled.fullmatch(k))
  if not count:
    return {k: stack_layers(v, name) for k, v in tree.items()}
  layers = [tree[f"{name}_{i}"] for i in range(count)]
  rest = {k: v for k, v in tree.items() if not unrolled.fullmatch(k)}
  return {**rest, name: jax.tree.map(lambda *xs: np.stack(xs), *layers)}


def unstack_layers(tree, name="layers"):
  """Inverse of `stack_layers`; a tree without stacked layers is returned as it is."""
  if not isinstance(tree, dict):
    return tree
  if name not in tree:
    return {k: unstack_layers(v, name) for k, v in tree.items()}
  stacked = jax.tree.map(np.asarray, tree[name])
  count = len(jax.tree.leaves(stacked)[0])
  rest = {k: v for k, v in tree.items() if k != name}
  return {**rest, **{f"{name}_{i}": jax.tree.map(lambda x, i=i: x[i], stacked)
                     for i in range(count)}}


def check_finite_params(params, source):
  """Raises errors.NonFiniteError naming the tensors of `params` that hold NaN or inf."""
  bad = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
         if not np.isfinite(np.asarray(leaf)).all()]
  if bad:
    raise errors.NonFiniteError(
        f"{source}: {len(bad)} of {len(jax.tree.leaves(params))} parameter tensors hold NaN or "
        f"infinite values, e.g. {', '.join(bad[:3])} (a diverged training run?)")


def write_root(model_dir, root):
  """Writes [P] `root` to model_dir/ROOT_FILE (None: removes that file)."""
  path = os.path.join(model_dir, ROOT_FILE)
  if root is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path, "w") as f:
    json.dump({"about": ROOT_ABOUT, "root": [float(x) for x in np.asarray(root)]}, f)


def read_root(model_dir, dim):
  """-> the [dim] float32 root of model_dir/ROOT_FILE, or None where there is no such file."""
  path = os.path.join(model_dir, ROOT_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      root = np.asarray(json.load(f)["root"], np.float32)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a root file ({type(e).__name__}: {e}); expected "
                     '{"root": [numbers]}') from e
  if root.shape != (dim,) or not np.all(np.isfinite(root)):
    raise ValueError(f"{path}: the root must be {dim} finite numbers (the model's "
                     f"projection_dim); it has shape {root.shape}")
  return root


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
  preprocessing), and ROOT_FILE for an RE `root` that is not the model's own empty-string
  embedding (a fixed or a trained root; None removes a stale ROOT_FILE)."""
  os.makedirs(out_dir, exist_ok=True)
  write_root(out_dir, root)
  hf_config.architectures = list(architectures)
  hf_config.save_pretrained(out_dir)
  weights = os.path.join(out_dir, "model.safetensors")
  safetensors.numpy.save_file(state_dict, weights, metadata={"format": "pt"})
  umask = os.umask(0)  # safetensors creates the file 0600; give it the usual permissions
  os.umask(umask)
  os.chmod(weights, 0o666 & ~umask)
  copy_files(source_dir, out_dir, files)
  return out_dir
