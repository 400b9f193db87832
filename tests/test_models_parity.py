"""Flax towers vs the Hugging Face PyTorch CLIPModel: same features to 1e-5 (fp32)."""
import os

import jax
import numpy as np
import pytest

from conftest import TINY_TEXT, TINY_VISION, save_torch_clip
from hierre_jax.data import packing
from hierre_jax.models import hf_io
from hierre_jax.models.clip import convert
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import random_init
from hierre_jax.models.clip import tokenizer

torch = pytest.importorskip("torch")

TEXTS = ["", "a picture of a cat", "dog", "A man riding a horse on a beach at sunset, "
         "with waves in the background and birds flying overhead", "x " * 90]


def torch_features(model, ids, pixels_nhwc):
  with torch.no_grad():
    t = model.get_text_features(input_ids=torch.from_numpy(ids).long())
    v = model.get_image_features(pixel_values=torch.from_numpy(
        np.ascontiguousarray(pixels_nhwc.transpose(0, 3, 1, 2))))
  t = getattr(t, "pooler_output", t)
  v = getattr(v, "pooler_output", v)
  return t.numpy(), v.numpy()


def flax_features(model_dir, ids, pixels, scan_layers=True):
  config, params, _ = convert.load_clip(model_dir, scan_layers)
  clip = modeling.CLIP(config)
  t = clip.apply({"params": params}, ids, method=clip.encode_text)
  v = clip.apply({"params": params}, pixels, method=clip.encode_image)
  return np.asarray(t), np.asarray(v)


def packed_flax_features(model_dir, id_lists, scan_layers=True):
  """The texts packed into rows of 77 tokens (two shards), each pooled at its end token."""
  config, params, _ = convert.load_clip(model_dir, scan_layers)
  texts = [(np.asarray(ids), int(modeling.end_of_text_position(np.asarray(ids),
                                                              config.text.eos_token_id)))
           for ids in id_lists]
  half = len(texts) // 2
  packed = packing.pack([texts[:half], texts[half:2 * half]], tokenizer.MAX_LENGTH, 0)
  clip = modeling.CLIP(config)
  return np.asarray(clip.apply({"params": params}, packed, method=clip.encode_packed_text))


def check_parity(model_dir, model, image_size, pad_to=None):
  """Both layouts (scanned and unrolled layers) against PyTorch -> scanned text features."""
  tok = tokenizer.load_tokenizer(model_dir)
  id_lists = tokenizer.tokenize(tok, TEXTS)
  length = pad_to or max(map(len, id_lists))
  ids = tokenizer.pad(id_lists, length, tok.pad_token_id)
  pixels = np.random.default_rng(1).normal(size=(3, image_size, image_size, 3)).astype(np.float32)
  want_t, want_v = torch_features(model, ids, pixels)
  for scan_layers in (True, False):
    got_t, got_v = flax_features(model_dir, ids, pixels, scan_layers)
    np.testing.assert_allclose(got_t, want_t, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_v, want_v, atol=1e-5, rtol=0)
    # Packed several to a row (the train step's layout), each text has its own features.
    packed = packed_flax_features(model_dir, id_lists + id_lists[::-1], scan_layers)
    np.testing.assert_allclose(packed.reshape(len(TEXTS) * 2, -1),
                               np.concatenate([want_t, want_t[::-1]]), atol=1e-5, rtol=0)
  return flax_features(model_dir, ids, pixels)[0]


@pytest.mark.parametrize("eos_token_id,act", [(2, "quick_gelu"), (49407, "gelu")])
def test_tiny_parity_padding_and_empty_string(tmp_path, eos_token_id, act):
  text = dict(TINY_TEXT, eos_token_id=eos_token_id, hidden_act=act)
  model = save_torch_clip(str(tmp_path), text, dict(TINY_VISION, hidden_act=act), 16)
  short = check_parity(str(tmp_path), model, 32)
  padded = check_parity(str(tmp_path), model, 32, pad_to=77)
  np.testing.assert_allclose(short, padded, atol=1e-5)  # padding after EOS changes nothing


def test_vit_b32_config_parity(tmp_path):
  model = save_torch_clip(str(tmp_path), random_init.VIT_B32["text_config"],
                          random_init.VIT_B32["vision_config"], 512)
  check_parity(str(tmp_path), model, 224)


def test_export_round_trip_loads_in_transformers(tmp_path, tiny_clip_dir):
  import transformers
  config, params, _ = convert.load_clip(tiny_clip_dir)
  out = str(tmp_path / "export")
  convert.export_clip(params, convert.load_hf_config(tiny_clip_dir), out, tiny_clip_dir)
  reloaded = transformers.CLIPModel.from_pretrained(out).eval()
  original = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
  for (name, a), (_, b) in zip(original.state_dict().items(), reloaded.state_dict().items()):
    assert torch.equal(a, b), name
  _, params2, _ = convert.load_clip(out)
  jax.tree.map(np.testing.assert_array_equal, params, params2)
  # The unrolled layout exports the same file; the layouts convert into each other exactly.
  _, unrolled, _ = convert.load_clip(out, scan_layers=False)
  assert "layers_1" in unrolled["vision_model"]["encoder"]
  assert params["vision_model"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].shape[0] == 2
  jax.tree.map(np.testing.assert_array_equal, hf_io.stack_layers(unrolled), params)
  jax.tree.map(np.testing.assert_array_equal, hf_io.unstack_layers(params), unrolled)
  again = str(tmp_path / "export_unrolled")
  convert.export_clip(unrolled, convert.load_hf_config(tiny_clip_dir), again)
  assert (open(os.path.join(again, "model.safetensors"), "rb").read()
          == open(os.path.join(out, "model.safetensors"), "rb").read())
  assert tokenizer.tokenize(tokenizer.load_tokenizer(out), ["a picture of a cat"]) == [
      [49406, 320, 1674, 539, 320, 2368, 49407]]


def test_remat_gives_the_same_features_and_gradients(tiny_clip_dir):
  from hierre_jax import embedding
  config, params, _ = convert.load_clip(tiny_clip_dir)
  ids = tokenizer.pad(tokenizer.tokenize(tokenizer.load_tokenizer(tiny_clip_dir), TEXTS), 77,
                      49407)
  text = embedding.text_params(config, params)
  loss = lambda remat: lambda p: embedding.text_encoder(config, remat)(p, ids).sum()
  for a, b in zip(jax.value_and_grad(loss(False))(text), jax.value_and_grad(loss(True))(text)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5), a, b)
