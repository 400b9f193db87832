"""open_clip-native checkpoints (models/open_clip): against open_clip itself where it imports
(open_clip imports torchvision, so not beside CI's CPU torch: `bash launch/reference_parity.sh`
runs those tests), and everywhere against transformers' CLIPModel of the same weights, the
files open_clip writes (hub layout, epoch_N.pt), the refusals and the export."""
import json
import os

import numpy as np
import pytest
import safetensors.numpy

from family_matrix import TINY_TEXT, TINY_VISION
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax.data import text as text_ids
from hierre_jax.models import open_clip as oc_family
from hierre_jax.models.open_clip import checkpoint
from references import TEXTS, assert_parity, random_images, unit

torch = pytest.importorskip("torch")

# Messy texts: open_clip cleans (ftfy, HTML entities, whitespace) before the BPE.
MESSY = TEXTS + ["a &amp; b", "  A   Dog\n ", "caf\u00c3\u00a9"]
# A ViT-H-14-shaped tiny config: head_width 80 (2 heads of 80), patch 14, exact GELU.
TINY_H14 = dict(embed_dim=32, quick_gelu=False,
                vision_cfg=dict(image_size=28, layers=2, width=160, head_width=80,
                                patch_size=14, mlp_ratio=4.0),
                text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4,
                              layers=2))


def write_open_clip_dir(out_dir, model, model_cfg):
  """The hub layout open_clip's push_to_hf_hub writes: config + safetensors."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "open_clip_config.json"), "w") as f:
    json.dump({"model_cfg": model_cfg, "preprocess_cfg": {}}, f)
  safetensors.numpy.save_file({k: v.numpy() for k, v in model.state_dict().items()},
                              os.path.join(out_dir, checkpoint.SAFETENSORS))
  return out_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("open_clip"))
  return oc_family.FAMILY.write_random(out, dict(TINY_TEXT, hidden_act="gelu"),
                                       dict(TINY_VISION, hidden_act="gelu"), 16, seed=2)


@pytest.mark.reordering
@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-32-quickgelu", "tiny-H-14"])
def test_parity_with_open_clip(name, tmp_path):
  """Random weights (LayerNorms and biases perturbed) of open_clip.create_model: the same
  token ids, text and image features to 1e-5, and our export loads strictly in open_clip."""
  open_clip = pytest.importorskip("open_clip")
  torch.manual_seed(0)
  if name == "tiny-H-14":
    model_cfg = TINY_H14
    ref = open_clip.model.CLIP(**model_cfg)
  else:
    model_cfg = open_clip.get_model_config(name)
    ref = open_clip.create_model(name)
  ref.eval()
  with torch.no_grad():
    for key, p in ref.named_parameters():
      if key.endswith("bias") or ".ln_" in key or key.startswith("ln_"):
        p.add_(0.1 * torch.randn_like(p))
  model = models.load(write_open_clip_dir(str(tmp_path / "oc"), ref, model_cfg))
  assert model.family is oc_family.FAMILY
  assert model.config.vision.hidden_act == ("quick_gelu" if model_cfg.get("quick_gelu") else "gelu")
  want_ids = open_clip.get_tokenizer("ViT-B-32")(MESSY).numpy()
  got = text_ids.pad(text_ids.tokenize(model.tokenizer, MESSY, model.max_length), 77, 0)
  np.testing.assert_array_equal(got, want_ids)
  size = model.config.vision.image_size
  pixels = random_images(3, size)
  with torch.no_grad():
    want_text = ref.encode_text(torch.from_numpy(want_ids)).numpy()
    want_image = ref.encode_image(torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())).numpy()
  encoders = model.encoders()
  text = np.asarray(encoders.text(model.params, want_ids.astype(np.int32)))
  image = np.asarray(encoders.image(model.params, pixels))
  for ours, want in ((text, want_text), (image, want_image)):
    assert (unit(want) @ unit(want).T)[np.triu_indices(len(want), 1)].max() < 0.999
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  out = model.export(str(tmp_path / "export"))
  back = open_clip.model.CLIP(**model_cfg)
  back.load_state_dict({k: torch.from_numpy(v) for k, v in safetensors.numpy.load_file(
      os.path.join(out, checkpoint.SAFETENSORS)).items()}, strict=True)
  with torch.no_grad():
    np.testing.assert_array_equal(back.eval().encode_text(torch.from_numpy(want_ids)).numpy(),
                                  want_text)


@pytest.mark.reordering
def test_features_equal_transformers_clip_of_the_export(tiny_dir, tmp_path):
  model = models.load(tiny_dir)
  out = model.family.write_hf_checkpoint(model.params, model.config, str(tmp_path / "hf"),
                                         tiny_dir)
  assert models.family_of(out) is models.FAMILIES["clip"]
  assert_parity(out)
  hf = models.load(out)
  ids = text_ids.pad(text_ids.tokenize(model.tokenizer, TEXTS, 77), 77, 0)
  np.testing.assert_array_equal(model.encoders().text(model.params, ids),
                                hf.encoders().text(hf.params, ids))
  # open_clip cleans text (HTML entities, ftfy): the export keeps that for hierre_jax (its
  # record of cleaning), so "dog &amp; cat" has the source's features after the round trip;
  # transformers' own tokenizer does not clean (the export warns).
  import transformers
  from hierre_jax import loading
  texts = ["dog &amp; cat", "a  caf\u00e9 &lt;sign&gt;"]
  source, back = loading.embedder(tiny_dir).texts(texts)[0], loading.embedder(out).texts(texts)[0]
  np.testing.assert_allclose(back, source, atol=1e-6)
  plain = transformers.CLIPTokenizer.from_pretrained(out)
  assert plain(texts[0])["input_ids"] != hf.tokenizer(texts[0])["input_ids"]
  assert hf.tokenizer(texts[0])["input_ids"] == model.tokenizer(texts[0])["input_ids"]


def test_preprocessing_crops_as_torchvision_and_epoch_latest_is_found(tiny_dir, tmp_path):
  """open_clip's transforms are torchvision's (CenterCrop rounds the offset); a run folder
  holding only epoch_latest.pt (open_clip's --save-most-recent) is read."""
  import shutil
  model = models.load(tiny_dir)
  assert model.preprocessing.round_crop
  run = tmp_path / "run"
  run.mkdir()
  shutil.copy(os.path.join(tiny_dir, "open_clip_config.json"), run)
  state = safetensors.numpy.load_file(os.path.join(tiny_dir, checkpoint.SAFETENSORS))
  torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}},
             run / "epoch_latest.pt")
  import jax
  jax.tree.map(np.testing.assert_array_equal, models.load(str(run)).params, model.params)


def test_export_round_trip_and_training_checkpoints(tiny_dir, tmp_path):
  """The export rewrites the same tensors; an epoch_N.pt ({"state_dict"}, "module." keys,
  the newest epoch) with the config beside it reads the same parameters, as a folder or as
  the file."""
  import jax
  model = models.load(tiny_dir)
  out = model.export(str(tmp_path / "out"))
  before = safetensors.numpy.load_file(os.path.join(tiny_dir, checkpoint.SAFETENSORS))
  after = safetensors.numpy.load_file(os.path.join(out, checkpoint.SAFETENSORS))
  assert set(before) == set(after) and any(k.endswith("attn.in_proj_weight") for k in after)
  for key in before:
    np.testing.assert_array_equal(after[key], before[key], err_msg=key)
  train = tmp_path / "train"
  train.mkdir()
  with open(os.path.join(tiny_dir, "open_clip_config.json")) as f:
    json.dump(json.load(f)["model_cfg"], open(train / "open_clip_config.json", "w"))  # bare form
  state = {f"module.{k}": torch.from_numpy(v) for k, v in before.items()}
  torch.save({"epoch": 3, "state_dict": state}, train / "epoch_3.pt")
  torch.save({"epoch": 1, "state_dict": {k: 0 * v for k, v in state.items()}},
             train / "epoch_1.pt")
  for path in (str(train), str(train / "epoch_3.pt")):
    again = models.load(path)
    assert again.family is oc_family.FAMILY
    jax.tree.map(np.testing.assert_array_equal, again.params, model.params)
  # The library API refuses what the entry points refuse: no export over or beside the source
  # (open_clip_model.safetensors there would win over the newest epoch at every later load).
  for out in (str(train), str(train / "sub")):
    with pytest.raises(errors.UserError, match=r"(is|lies inside) the input model_dir="):
      models.load(str(train)).export(out)
  assert sorted(os.listdir(train)) == ["epoch_1.pt", "epoch_3.pt", "open_clip_config.json"]
  torch.save({"epoch": 4, "state_dict": dict(state, step=7)}, train / "epoch_4.pt")
  with pytest.raises(errors.UserError, match=r"epoch_4.pt: state_dict\['step'\] is a int, not a "
                     "tensor"):
    models.load(str(train))


@pytest.mark.parametrize("change,key", [
    (lambda c: c.update(custom_text=True), "custom_text"),
    (lambda c: c["vision_cfg"].update(timm_model_name="convnext_base"),
     "vision_cfg.timm_model_name"),
    (lambda c: c["text_cfg"].update(hf_model_name="roberta-base"), "text_cfg.hf_model_name"),
    (lambda c: c["vision_cfg"].update(ls_init_value=1e-5), "vision_cfg.ls_init_value"),
    (lambda c: c["vision_cfg"].update(layers=[3, 4, 6, 3]), "vision_cfg.layers"),
    (lambda c: c.update(multimodal_cfg={"width": 512}), "multimodal_cfg"),
    (lambda c: c["text_cfg"].update(hf_tokenizer_name="timm/ViT-B-16-SigLIP"),
     "text_cfg.hf_tokenizer_name"),
    (lambda c: c["text_cfg"].update(tokenizer_kwargs={"clean": "canonicalize"}),
     "text_cfg.tokenizer_kwargs"),
    (lambda c: c["vision_cfg"].update(rope_theta=10000), "vision_cfg.rope_theta"),
    (lambda c: c.update(new_option=1), "new_option")])
def test_other_classes_are_refused_naming_the_key(tiny_dir, tmp_path, change, key):
  import shutil
  bad = shutil.copytree(tiny_dir, tmp_path / "bad")
  with open(bad / "open_clip_config.json") as f:
    found = json.load(f)
  change(found["model_cfg"])
  with open(bad / "open_clip_config.json", "w") as f:
    json.dump(found, f)
  with pytest.raises(errors.UserError, match=f"open_clip_config.json: {key}="):
    models.load(str(bad))


def test_preprocess_cfg_is_honoured(tiny_dir, tmp_path):
  import shutil
  d = shutil.copytree(tiny_dir, tmp_path / "pre")
  with open(d / "open_clip_config.json") as f:
    found = json.load(f)
  found["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                             "resize_mode": "squash"}
  with open(d / "open_clip_config.json", "w") as f:
    json.dump(found, f)
  p = models.load(str(d)).preprocessing
  assert (p.mean, p.std, p.squash) == ((0.5,) * 3, (0.5,) * 3, True)
  found["preprocess_cfg"]["interpolation"] = "bilinear"
  with open(d / "open_clip_config.json", "w") as f:
    json.dump(found, f)
  with pytest.raises(errors.UserError, match="preprocess_cfg.interpolation='bilinear'"):
    models.load(str(d)).preprocessing


def test_open_clip_reads_texts_as_its_own_tokenizer(tiny_dir):
  """open_clip's SimpleTokenizer lower-cases with Python (a word-final capital sigma becomes
  the final sigma, which transformers' lower-casing does not) and has other special-token
  strings, so a literal "<|endoftext|>" in a caption is text to it (MERU's OpenAI tokenizer
  reads it as the special token, as transformers does)."""
  from hierre_jax.models import meru
  tokenizer = models.load(tiny_dir).tokenizer
  eot = 49407
  ids = tokenizer("a dog <|endoftext|> cat")["input_ids"]
  assert ids[-1] == eot and eot not in ids[1:-1]
  meru_ids = meru.FAMILY.load_tokenizer("")("a dog <|endoftext|> cat")["input_ids"]
  assert eot in meru_ids[1:-1]
  assert tokenizer("ΟΔΟΣ")["input_ids"] == tokenizer("οδος")["input_ids"] != tokenizer(
      "οδοσ")["input_ids"]
