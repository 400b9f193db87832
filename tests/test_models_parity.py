"""Every model family's Flax towers against its Hugging Face PyTorch model on random weights
(`family_dir`, the families the matrix checks against transformers): the same features and
logits to 1e-5 (fp32), texts padded with their mask or packed several to a row, and exports
that reload bit-identical (every family) and in transformers. CLIP's own variants (eos ids,
activations, the ViT-B/32 shapes, scanned layers) below."""
import functools
import os

import jax
import numpy as np
import pytest
import safetensors.numpy

from conftest import save_torch_clip
from family_matrix import MATRIX, TINY_TEXT, TINY_VISION, TRANSFORMERS, needs
from hierre_jax import models
from hierre_jax.data import text as text_ids
from hierre_jax.models import family as family_lib
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import random_init
from references import TEXTS, assert_parity

torch = pytest.importorskip("torch")


@pytest.mark.reordering
def test_parity_with_transformers(family_dir, tmp_path):
  model = models.load(family_dir)
  needs(model, reference=TRANSFORMERS)
  if not model.family.architectures:  # open_clip: transformers' CLIPModel of its weights
    family_dir = model.family.write_hf_checkpoint(model.params, model.config, str(tmp_path),
                                                  family_dir)
  assert_parity(family_dir)


def test_export_round_trip_is_bit_identical(family_dir, tmp_path):
  model = models.load(family_dir)
  family, params = model.family, model.params
  out = model.export(str(tmp_path / "out"))
  assert models.family_of(out) is family
  _, again = family.read_checkpoint(out)
  jax.tree.map(np.testing.assert_array_equal, again, params)


def test_export_holds_the_same_tensors_and_loads_in_transformers(family_dir, tmp_path):
  import transformers
  model = models.load(family_dir)
  needs(model, reference=TRANSFORMERS)
  family = model.family
  out = model.export(str(tmp_path / "out"))
  weights = MATRIX[family.name].weights_file
  before = safetensors.numpy.load_file(os.path.join(family_dir, weights))
  after = safetensors.numpy.load_file(os.path.join(out, weights))
  assert set(after) == set(before)
  for key, value in before.items():
    np.testing.assert_array_equal(after[key], value, err_msg=key)
  if family.architectures:  # a Hugging Face format (open_clip's: tests/test_open_clip.py)
    _, info = transformers.AutoModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    processor = transformers.AutoProcessor.from_pretrained(out)
    ours = model.tokenizer("a photo of a cat")["input_ids"]  # SigLIP's padded to its length
    assert processor.tokenizer("a photo of a cat", padding="max_length",
                               max_length=len(ours))["input_ids"] == ours


@pytest.mark.reordering
@pytest.mark.parametrize("eos_token_id,act", [(2, "quick_gelu"), (49407, "gelu")])
def test_clip_parity_with_either_eos_id_and_activation(tmp_path, eos_token_id, act):
  text = dict(TINY_TEXT, eos_token_id=eos_token_id, hidden_act=act)
  save_torch_clip(str(tmp_path), text, dict(TINY_VISION, hidden_act=act), 16)
  assert_parity(str(tmp_path))


@pytest.mark.reordering
def test_vit_b32_config_parity(tmp_path):
  save_torch_clip(str(tmp_path), random_init.VIT_B32["text_config"],
                  random_init.VIT_B32["vision_config"], 512)
  assert_parity(str(tmp_path))


def test_convert_between_scanned_and_unrolled_layers(tmp_path, family_dir):
  model = models.load(family_dir)
  needs(model, family_lib.STACKED_LAYERS)
  family, entry = model.family, MATRIX[model.family.name]
  *encoder_path, name = entry.text_layers  # where the text tower's layers are
  encoder = lambda tree: functools.reduce(lambda t, k: t[k], encoder_path, tree)
  config, params = family.read_checkpoint(family_dir)
  _, unrolled = family.read_checkpoint(family_dir, scan_layers=False)
  assert f"{name}_1" in encoder(unrolled) and family.has_stacked_layers(params)
  assert not family.has_stacked_layers(unrolled)
  depth = {len(x) for x in jax.tree.leaves(encoder(params)[name])}
  assert depth == {sum(1 for k in encoder(unrolled) if k.startswith(f"{name}_"))}
  jax.tree.map(np.testing.assert_array_equal, state_dicts.stack_layers(unrolled, name), params)
  jax.tree.map(np.testing.assert_array_equal, state_dicts.unstack_layers(params, name), unrolled)
  # Both layouts export the same file.
  for layout, tree in (("scanned", params), ("unrolled", unrolled)):
    family.write_checkpoint(tree, config, str(tmp_path / layout), family_dir)
  assert (open(tmp_path / "scanned" / entry.weights_file, "rb").read()
          == open(tmp_path / "unrolled" / entry.weights_file, "rb").read())


@pytest.mark.reordering
def test_remat_gives_the_same_features_and_gradients(family_dir):
  from hierre_jax import embedding
  model = models.load(family_dir)
  tok = model.tokenizer
  ids = text_ids.pad(text_ids.tokenize(tok, TEXTS, model.max_length), model.max_length,
                     tok.pad_token_id)
  text = model.text_params()
  loss = lambda remat: lambda p: embedding.text_encoder(model, remat)(p, ids).sum()
  for a, b in zip(jax.value_and_grad(loss(False))(text), jax.value_and_grad(loss(True))(text)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5), a, b)


def test_half_precision_weights_load_as_their_float32_values(family_dir, tmp_path):
  """Large checkpoints are often stored in float16 or bfloat16: every family's reader takes
  them, as safetensors and as a PyTorch .bin, and computes in float32 with exactly the
  stored values."""
  import shutil
  import ml_dtypes
  torch = pytest.importorskip("torch")
  full = models.load(family_dir)
  needs(full, reference=TRANSFORMERS)  # safetensors and .bin files (MERU's .pth: test_meru)
  for np_dtype in (np.float16, ml_dtypes.bfloat16):
    half = str(tmp_path / np.dtype(np_dtype).name)
    shutil.copytree(family_dir, half)
    weights = [n for n in os.listdir(half) if n.endswith(".safetensors")]
    assert weights
    for name in weights:
      tensors = safetensors.numpy.load_file(os.path.join(half, name))
      safetensors.numpy.save_file({k: v.astype(np_dtype) if v.dtype == np.float32 else v
                                   for k, v in tensors.items()}, os.path.join(half, name))
    rounded = jax.tree.map(lambda x: np.asarray(x).astype(np_dtype).astype(np.float32),
                           full.params)
    for a, b in zip(jax.tree.leaves(models.load(half).params), jax.tree.leaves(rounded)):
      assert a.dtype == np.float32
      np.testing.assert_array_equal(a, b)
    as_bin = half + "_bin"  # the same tensors as torch writes them (pytorch_model.bin)
    shutil.copytree(half, as_bin)
    for name in weights:
      tensors = safetensors.numpy.load_file(os.path.join(as_bin, name))
      os.remove(os.path.join(as_bin, name))
      torch_dtype = {np.float16: torch.float16}.get(np_dtype, torch.bfloat16)
      state = {k: torch.from_numpy(v.astype(np.float32)).to(torch_dtype)
               if v.dtype == np_dtype else torch.from_numpy(v) for k, v in tensors.items()}
      torch.save(state, os.path.join(as_bin, name.replace("model.safetensors",
                                                          "pytorch_model.bin")))
    for a, b in zip(jax.tree.leaves(models.load(as_bin).params), jax.tree.leaves(rounded)):
      assert a.dtype == np.float32
      np.testing.assert_array_equal(a, b)
