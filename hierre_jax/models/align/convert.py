"""Hugging Face `AlignModel` checkpoints <-> Flax variables, both directions.

The Flax tree mirrors the state-dict keys (`encoder.layer.N` <-> `layer_N`,
`encoder.blocks.N` <-> `blocks_N`), BERT's layers stacked into `layer` for the scanned
layout (`state_dicts.stack_layers`); BatchNorm running statistics go to a top-level
`batch_stats` entry of the parameter tree (at the same paths, leaves `mean`/`var`), which
the family's encoders hand to Flax as its own collection. `num_batches_tracked` buffers
are dropped on reading and written as 0 on export; the unused BERT pooler round-trips.
"""
import dataclasses
import os
import re

import jax
import numpy as np
import transformers

from hierre_jax.models import hf_io
from hierre_jax.models import state_dicts
from hierre_jax.models.align import modeling
from hierre_jax.models.align import preprocessing

# Non-persistent buffers older checkpoints may carry; they hold no weights.
IGNORED_KEYS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")
TRACKED = "num_batches_tracked"
MODEL_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "preprocessor_config.json", "processor_config.json")
STATS = {"running_mean": "mean", "running_var": "var"}
LAYER = "layer"  # BERT's encoder layers: layer_N unrolled, layer stacked


def hf_key_to_path(key, ndim):
  """'vision_model.encoder.blocks.3.projection.project_bn.running_mean' ->
  ('batch_stats', 'vision_model', ..., 'blocks_3', ..., 'mean'); parameters without the
  'batch_stats' prefix, their leaf 'kernel', 'scale', 'embedding' or 'bias'."""
  key = re.sub(r"\.(layer|blocks)\.(\d+)\.", r".\1_\2.", key)
  parts = key.split(".")
  if parts[-1] in STATS:
    return ("batch_stats", *parts[:-1], STATS[parts[-1]])
  if parts[-1] == "weight":
    parts[-1] = ("scale" if ndim == 1 else "embedding" if parts[-2].endswith("embeddings")
                 else "kernel")
  return tuple(parts)


def path_to_hf_key(path):
  names = list(path[1:]) if path[0] == "batch_stats" else list(path)
  if path[0] == "batch_stats":
    names[-1] = {v: k for k, v in STATS.items()}[names[-1]]
  elif names[-1] in ("scale", "embedding", "kernel"):
    names[-1] = "weight"
  return re.sub(r"\.(layer|blocks)_(\d+)\.", r".\1.\2.", ".".join(names))


def expected_shapes(config):
  """{HF key: Flax-layout shape} of every variable of `config`."""
  shapes = modeling.variable_shapes(dataclasses.replace(config, scan_layers=False))
  tree = {**shapes["params"], "batch_stats": shapes["batch_stats"]}
  return {path_to_hf_key(tuple(k.key for k in path)): leaf.shape
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def state_dict_to_params(state_dict, config, source="checkpoint"):
  """HF state dict (without `num_batches_tracked`) -> the parameter tree of `config`'s layout,
  checked key by key."""
  params = state_dicts.tree_from_state_dict(state_dict, expected_shapes(config), hf_key_to_path,
                                      source, "an AlignModel")
  return state_dicts.stack_layers(params, LAYER) if config.scan_layers else params


def has_stacked_layers(params):
  return LAYER in params["text_model"]["encoder"]


def params_to_state_dict(params):
  """Parameter tree (either layout) -> HF state dict (float32, C-contiguous), with an int64 0
  `num_batches_tracked` beside each BatchNorm's statistics."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state_dicts.unstack_layers(params, LAYER)):
    names = tuple(k.key for k in path)
    key = path_to_hf_key(names)
    out[key] = np.array(state_dicts.to_hf_array(names[-1], np.asarray(leaf, np.float32)), order="C")
    if key.endswith(".running_mean"):
      out[key[:-len("running_mean")] + TRACKED] = np.zeros((), np.int64)
  return out


def load_hf_config(model_dir):
  return hf_io.load_hf_config(model_dir, transformers.AlignConfig)


def load_align(path_or_id, scan_layers=True):
  """-> (AlignConfig, parameter tree with `batch_stats`, model_dir) of a Hugging Face
  AlignModel checkpoint, BERT's layers stacked for scanning or unrolled (`scan_layers`)."""
  model_dir = hf_io.resolve_model_dir(path_or_id)
  config = modeling.AlignConfig.from_hf(load_hf_config(model_dir), scan_layers)
  tensors = {k: v for k, v in hf_io.read_state_dict(model_dir, IGNORED_KEYS).items()
             if not k.endswith(TRACKED)}
  params = state_dict_to_params(tensors, config, source=model_dir)
  state_dicts.check_finite_params(params, model_dir)
  return config, jax.tree.map(np.asarray, params), model_dir


def export_align(params, hf_config, out_dir, source_dir=None):
  """Writes an AlignModel directory (`hf_io.write_model_dir`), with a
  preprocessor_config.json of align-base's settings where the source has none."""
  params = dict(params)
  root = params.pop("root", None)
  hf_io.write_model_dir(params_to_state_dict(params), root, hf_config, ["AlignModel"], out_dir,
                        source_dir, MODEL_FILES)
  if not any(os.path.exists(os.path.join(out_dir, name))
             for name in ("preprocessor_config.json", "processor_config.json")):
    preprocessing.Preprocessing().write_hf_config(out_dir)
  return out_dir
