"""Hugging Face CLIP checkpoints <-> Flax parameters, both directions.

`load_clip(path_or_hub_id)` reads a `CLIPModel` directory (config.json plus
model.safetensors, a sharded safetensors index, or pytorch_model.bin) and
returns `(ClipConfig, params, model_dir)`. `export_clip(...)` writes a directory that
`transformers.CLIPModel.from_pretrained` loads (and `root_file.ROOT_FILE` for a model trained
with its own root). Safetensors need no torch.
"""
import dataclasses
import os
import re

import jax
import numpy as np
import transformers

from hierre_jax.models import hf_io
from hierre_jax.models import root_file
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import preprocessing

# Non-persistent buffers some checkpoints carry; they hold no weights.
IGNORED_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "preprocessor_config.json",
                   "text_cleaning.json")  # cleaned_tokenizer.CLEANING_FILE


def hf_key_to_path(key, ndim):
  """'text_model.encoder.layers.3.mlp.fc1.weight' -> ('text_model', ..., 'layers_3', ..., 'kernel')."""
  parts = re.sub(r"\.layers\.(\d+)\.", r".layers_\1.", key).split(".")
  if parts[-1] == "weight":
    if ndim == 1:
      parts[-1] = "scale"
    elif parts[-2].endswith("embedding") and ndim == 2:
      parts[-1] = "embedding"
    else:
      parts[-1] = "kernel"
  return tuple(parts)


def path_to_hf_key(path):
  key = re.sub(r"\.layers_(\d+)\.", r".layers.\1.", ".".join(path))
  return re.sub(r"\.(scale|embedding|kernel)$", ".weight", key)


def has_stacked_layers(params):
  return "layers" in params["text_model"]["encoder"]


def state_dict_to_params(state_dict, config, source="checkpoint",
                         param_shapes=modeling.param_shapes, model="a CLIPModel"):
  """HF state dict -> Flax param tree of `config`'s layout, checked key by key against
  `param_shapes(config)` (a tree named like `model`'s state dict, as CLIP's is)."""
  unrolled = dataclasses.replace(config, scan_layers=False)
  expected = {path_to_hf_key(tuple(k.key for k in path)): leaf.shape
              for path, leaf in jax.tree_util.tree_leaves_with_path(param_shapes(unrolled))}
  params = state_dicts.tree_from_state_dict(state_dict, expected, hf_key_to_path, source, model)
  return state_dicts.stack_layers(params) if config.scan_layers else params


def params_to_state_dict(params):
  """Flax param tree (either layout) -> HF state dict of C-contiguous float32 numpy arrays
  (0-d kept 0-d)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state_dicts.unstack_layers(params)):
    names = tuple(k.key for k in path)
    out[path_to_hf_key(names)] = np.array(
        state_dicts.to_hf_array(names[-1], np.asarray(leaf, np.float32)), order="C")
  return out


def load_hf_config(model_dir):
  return hf_io.load_hf_config(model_dir, transformers.CLIPConfig)


def load_clip(path_or_id, scan_layers=True):
  """Returns (ClipConfig, params, model_dir) of a Hugging Face CLIPModel checkpoint, the
  encoder layers stacked for scanning or unrolled (`scan_layers`)."""
  model_dir = hf_io.resolve_model_dir(path_or_id)
  config = modeling.ClipConfig.from_hf(load_hf_config(model_dir), scan_layers)
  params = state_dict_to_params(hf_io.read_state_dict(model_dir, IGNORED_KEYS), config,
                                source=model_dir)
  state_dicts.check_finite_params(params, model_dir)
  return config, jax.tree.map(np.asarray, params), model_dir


def export_clip(params, hf_config, out_dir, tokenizer_dir=None):
  """Writes config.json + model.safetensors (+ tokenizer files of `tokenizer_dir`, and a
  preprocessor_config.json), and the RE root file of a `params["root"]`
  (`hf_io.write_model_dir`)."""
  params = dict(params)
  root = params.pop("root", None)
  hf_io.write_model_dir(params_to_state_dict(params), root, hf_config, ["CLIPModel"], out_dir,
                        tokenizer_dir, TOKENIZER_FILES)
  if not os.path.exists(os.path.join(out_dir, "preprocessor_config.json")):
    preprocessing.Preprocessing.from_model_dir(
        out_dir, hf_config.vision_config.image_size).write_hf_config(out_dir)
  return out_dir


