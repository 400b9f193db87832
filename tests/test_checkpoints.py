"""Checkpoint conversion rules and error messages."""
import json
import os

import numpy as np
import pytest
import safetensors.numpy

from hierre_jax.common import errors
from hierre_jax.data import text as text_ids
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import convert
from hierre_jax.models.clip import random_init
from hierre_jax.models.clip import tokenizer


def test_key_mapping_both_ways():
  cases = {
      ("text_model.encoder.layers.11.self_attn.q_proj.weight", 2):
          ("text_model", "encoder", "layers_11", "self_attn", "q_proj", "kernel"),
      ("text_model.final_layer_norm.weight", 1): ("text_model", "final_layer_norm", "scale"),
      ("text_model.embeddings.token_embedding.weight", 2):
          ("text_model", "embeddings", "token_embedding", "embedding"),
      ("vision_model.embeddings.patch_embedding.weight", 4):
          ("vision_model", "embeddings", "patch_embedding", "kernel"),
      ("vision_model.embeddings.class_embedding", 1):
          ("vision_model", "embeddings", "class_embedding"),
      ("logit_scale", 0): ("logit_scale",),
  }
  for (key, ndim), path in cases.items():
    assert convert.hf_key_to_path(key, ndim) == path
    assert convert.path_to_hf_key(path) == key


def test_layout_transposes_invert():
  x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
  y = state_dicts.to_flax_array("kernel", x)
  assert y.shape == (4, 5, 3, 2) and y[1, 2, 0, 1] == x[1, 0, 1, 2]
  np.testing.assert_array_equal(state_dicts.to_hf_array("kernel", y), x)
  m = np.arange(6.0).reshape(2, 3)
  assert state_dicts.to_flax_array("kernel", m).shape == (3, 2)


def tiny_checkpoint(tmp_path):
  from family_matrix import TINY_TEXT, TINY_VISION
  return random_init.write_random_clip(str(tmp_path), TINY_TEXT, TINY_VISION, 16)


def test_missing_and_unexpected_keys_are_named(tmp_path):
  d = tiny_checkpoint(tmp_path)
  path = os.path.join(d, "model.safetensors")
  tensors = safetensors.numpy.load_file(path)
  del tensors["text_model.final_layer_norm.bias"]
  tensors["text_model.extra.weight"] = np.zeros(3, np.float32)
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(state_dicts.CheckpointFormatError,
                     match=r"missing 1 \['text_model.final_layer_norm.bias'\]; "
                     r"unexpected 1 \['text_model.extra.weight'\]$"):
    convert.load_clip(d)


def test_many_mismatched_keys_are_counted_not_listed(tmp_path):
  d = tiny_checkpoint(tmp_path)
  path = os.path.join(d, "model.safetensors")
  tensors = {"model." + k: v for k, v in safetensors.numpy.load_file(path).items()}
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(state_dicts.CheckpointFormatError) as info:
    convert.load_clip(d)
  message = str(info.value)
  assert "\n" not in message and len(message) < 1200, message
  assert f"missing {len(tensors)} [" in message and f"unexpected {len(tensors)} [" in message


def test_truncated_safetensors_is_named(tmp_path):
  d = tiny_checkpoint(tmp_path)
  path = os.path.join(d, "model.safetensors")
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])
  with pytest.raises(state_dicts.CheckpointFormatError,
                     match=f"{path}: cannot read this safetensors file"):
    convert.load_clip(d)


def test_non_finite_weights_are_named(tmp_path):
  d = tiny_checkpoint(tmp_path)
  path = os.path.join(d, "model.safetensors")
  tensors = safetensors.numpy.load_file(path)
  tensors["text_projection.weight"][0, 0] = np.nan
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(errors.NonFiniteError, match=r"1 of \d+ parameter tensors hold NaN .*"
                     r"text_projection"):
    convert.load_clip(d)


def test_shape_mismatch_is_named(tmp_path):
  d = tiny_checkpoint(tmp_path)
  path = os.path.join(d, "model.safetensors")
  tensors = safetensors.numpy.load_file(path)
  tensors["text_projection.weight"] = np.zeros((17, 32), np.float32)
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(state_dicts.CheckpointFormatError, match="text_projection.weight has shape"):
    convert.load_clip(d)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    convert.load_clip(str(tmp_path))
  d = tiny_checkpoint(tmp_path / "m")
  os.remove(os.path.join(d, "merges.txt"))
  with pytest.raises(FileNotFoundError, match=r"missing \['merges.txt'\]"):
    tokenizer.load_tokenizer(d)
  os.remove(os.path.join(d, "model.safetensors"))
  with pytest.raises(FileNotFoundError, match="no model.safetensors"):
    convert.load_clip(d)


def test_pytorch_bin_and_sharded_safetensors_load(tmp_path, tiny_clip_dir):
  torch = pytest.importorskip("torch")
  _, want, _ = convert.load_clip(tiny_clip_dir)
  tensors = safetensors.numpy.load_file(os.path.join(tiny_clip_dir, "model.safetensors"))
  for kind in ("bin", "sharded"):
    d = tmp_path / kind
    d.mkdir()
    (d / "config.json").write_text(open(os.path.join(tiny_clip_dir, "config.json")).read())
    if kind == "bin":
      torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, d / "pytorch_model.bin")
    else:
      keys = sorted(tensors)
      halves = {"a.safetensors": keys[::2], "b.safetensors": keys[1::2]}
      for name, ks in halves.items():
        safetensors.numpy.save_file({k: tensors[k] for k in ks}, str(d / name))
      (d / "model.safetensors.index.json").write_text(json.dumps(
          {"weight_map": {k: n for n, ks in halves.items() for k in ks}}))
    _, got, _ = convert.load_clip(str(d))
    for (p, a), b in zip(sorted(_flat(want).items()), [v for _, v in sorted(_flat(got).items())]):
      np.testing.assert_array_equal(a, b, err_msg=f"{kind}: {p}")


def _flat(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, prefix + (k,)) if isinstance(v, dict) else {prefix + (k,): v})
  return out


def test_tokenizer_known_ids(tmp_path):
  tokenizer.write_clip_vocab(str(tmp_path))
  tok = tokenizer.load_tokenizer(str(tmp_path))
  id_lists = text_ids.tokenize(tok, ["a picture of a cat", "", "word " * 200], 77)
  assert id_lists[:2] == [[49406, 320, 1674, 539, 320, 2368, 49407], [49406, 49407]]
  ids = text_ids.pad(id_lists, 77, tok.pad_token_id)
  assert ids.shape == (3, 77) and ids[2, -1] == 49407 and ids[0, 7] == tok.pad_token_id
  assert text_ids.bucket_length(7, 8, 77) == 8 and text_ids.bucket_length(76, 8, 77) == 77
  with pytest.raises(ValueError, match="text 2 has 77 tokens, more than the padded length 64"):
    text_ids.pad(id_lists, 64, tok.pad_token_id)


def test_a_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  tiny_checkpoint(tmp_path / "workdirs" / "demo")
  with pytest.raises(FileNotFoundError, match=r"^workdirs/demoo: no such checkpoint directory "
                     r"\(did you mean demo\?\)"):
    convert.load_clip("workdirs/demoo")
  with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
    convert.load_clip("./elsewhere")


def test_export_has_the_usual_file_permissions(tmp_path):
  umask = os.umask(0o022)
  try:
    d = tiny_checkpoint(tmp_path / "m")
  finally:
    os.umask(umask)
  assert os.stat(os.path.join(d, "model.safetensors")).st_mode & 0o777 == 0o644


def test_family_is_read_from_config_json(tmp_path):
  from hierre_jax import models
  d = tiny_checkpoint(tmp_path)
  assert models.family_of(d).name == "clip"
  model = models.load(d)
  assert model.family is models.FAMILIES["clip"] and model.model_dir == d
  path = os.path.join(d, "config.json")
  hf_config = json.load(open(path))
  hf_config["architectures"] = ["BertModel"]
  json.dump(hf_config, open(path, "w"))
  with pytest.raises(models.UnsupportedModel, match=f"{path}: architecture \\['BertModel'\\] is "
                     "not supported; hierre_jax reads ALIGNModel, AlignModel, CLIPModel"):
    models.load(d)
  del hf_config["architectures"]  # older files: the model_type says it
  json.dump(hf_config, open(path, "w"))
  assert models.family_of(d).name == "clip"
