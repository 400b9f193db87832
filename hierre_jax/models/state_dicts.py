"""Checkpoint tensors whatever the format: PyTorch and safetensors files read with one-line
errors, the layout rules every family shares (Linear and Conv transposes, stacked layers),
a state dict checked key by key against a model, and the finiteness check of a loaded tree.
"""
import re

import jax
import numpy as np
import safetensors.numpy

from hierre_jax.common import errors


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
