"""SigLIP (models/siglip): the towers against transformers' SiglipModel at the base shapes,
the tokenizer's padding (the RE root depends on it), SigLIP 2's tokenizer pinned to right
padding, the refusals, and RE training of the text tower (encoder + head)."""
import json
import logging
import os

import jax
import numpy as np
import pytest

from conftest import save_torch_siglip
from family_matrix import SIGLIP_TINY_TEXT, TINY_VISION
from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax import train
from references import assert_parity, unit
import tiny_train_config
import tolerances

torch = pytest.importorskip("torch")

# SigLIP base (google/siglip-base-patch16-224): 768/3072/12/12 towers, 64 text positions,
# a 32000-token vocabulary, 224 px in patches of 16.
BASE_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=64, vocab_size=32000)
BASE_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, image_size=224, patch_size=16)


@pytest.fixture(scope="module")
def siglip64_dir(tmp_path_factory):
  """A tiny SigLIP with the real text length, 64."""
  out = str(tmp_path_factory.mktemp("siglip64"))
  save_torch_siglip(out, dict(SIGLIP_TINY_TEXT, max_position_embeddings=64), TINY_VISION, seed=4)
  return out


@pytest.mark.reordering
def test_base_shapes_parity_with_transformers(tmp_path):
  save_torch_siglip(str(tmp_path), BASE_TEXT, BASE_VISION, seed=1)
  assert_parity(str(tmp_path))


def test_tokenizer_pads_every_text_to_the_model_length_as_transformers(siglip64_dir, caplog):
  """transformers' SiglipTokenizer with padding="max_length": lower-cased, punctuation
  stripped, eos appended, pad = eos = 1, right-padded to 64; the root "" is 64 x eos; a
  punctuation-only text is the root, and is reported."""
  import transformers
  model = models.load(siglip64_dir)
  tok = model.tokenizer
  ref = transformers.SiglipTokenizer.from_pretrained(siglip64_dir)
  texts = ["a photo of a cat", "A Photo, of a CAT!", "", "dog " * 80]
  ids = tok(texts)["input_ids"]
  assert ids == ref(texts, padding="max_length", max_length=64, truncation=True)["input_ids"]
  assert {len(x) for x in ids} == {64} and model.max_length == 64
  assert ids[0] == ids[1] and ids[2] == [1] * 64
  assert ids[0][:ids[0].index(1)] and set(ids[0][ids[0].index(1):]) == {1}
  assert tok("a photo", max_length=8)["input_ids"] == tok("a photo")["input_ids"]  # 64 always
  with caplog.at_level(logging.WARNING):
    assert tok(["?!..."])["input_ids"] == [[1] * 64]
  assert "empty once lower-cased and stripped of punctuation" in caplog.text


@pytest.mark.reordering
def test_root_is_the_padded_empty_text_and_changes_without_padding(siglip64_dir):
  """The root is the embedding of 64 x eos; dropping the padding (one eos, as a tokenizer
  that does not pad gives) moves it far beyond roundoff: a regression guard. A text equal to
  the root gets a defined angle, not NaN."""
  model = models.load(siglip64_dir)
  encode = jax.jit(embedding.text_encoder(model))
  root = np.asarray(encode(model.params, embedding.root_ids(model.tokenizer, 64)))[0]
  unpadded = np.asarray(encode(model.params, np.ones((1, 1), np.int32)))[0]
  c = model.config.text
  atol = tolerances.reordered_atol(
      tolerances.tower_terms(c.hidden_size, c.intermediate_size, c.num_layers, 64, 48), 1.0)
  tolerances.assert_far(unpadded, root, atol, "the root without max-length padding")
  same = np.asarray(encode(model.params, np.asarray(model.tokenizer(["..."])["input_ids"],
                                                    np.int32)))[0]
  np.testing.assert_array_equal(same, root)
  angle = model.geometry.exterior_angle(same, unit(root + 0.1), root)
  assert np.isfinite(float(angle))


def test_siglip2_tokenizer_is_pinned_to_right_padding(siglip64_dir, tmp_path):
  """SigLIP 2 checkpoints (SiglipModel with a Gemma tokenizer.json; the Siglip2Tokenizer
  class pads on the left by default) get right padding to 64 with pad 0."""
  import shutil
  import transformers
  d = shutil.copytree(siglip64_dir, tmp_path / "siglip2")
  for name in ("spiece.model", "tokenizer_config.json"):
    os.remove(d / name)
  vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581a": 5}
  gemma = transformers.Siglip2Tokenizer(vocab=vocab, merges=[])
  gemma.save_pretrained(str(d))
  assert transformers.AutoTokenizer.from_pretrained(str(d)).padding_side == "left"
  ids = models.load(str(d)).tokenizer(["a", "a a"])["input_ids"]
  assert all(len(x) == 64 and x[0] != 0 and x[-1] == 0 for x in ids)


def test_siglip2_hub_layout_lower_cases_as_the_model_was_trained(siglip64_dir, tmp_path):
  """SigLIP 2's hub folders name GemmaTokenizer (tokenizer.json, no lower-casing) though
  SigLIP 2 was trained on lower-cased text; in HierarCaps only level-4 captions have capitals,
  so keeping case would line casing up with depth. Texts are lower-cased for that layout
  (SigLIP 1's spiece folders are untouched)."""
  import shutil
  import transformers
  from tokenizers import Tokenizer, models as bpe_models, normalizers, pre_tokenizers, trainers
  d = shutil.copytree(siglip64_dir, tmp_path / "siglip2_hub")
  for name in ("spiece.model", "tokenizer_config.json"):
    os.remove(d / name)
  bpe = Tokenizer(bpe_models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
  bpe.normalizer = normalizers.Replace(" ", "\u2581")
  bpe.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
  bpe.train_from_iterator(["a dog on the grass", "A Dog On The Grass"] * 20, trainers.BpeTrainer(
      vocab_size=200, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]))
  bpe.save(str(d / "tokenizer.json"))
  (d / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "GemmaTokenizer", "pad_token": "<pad>", "eos_token": "<eos>",
      "bos_token": "<bos>", "unk_token": "<unk>", "add_bos_token": False}))
  plain = transformers.AutoTokenizer.from_pretrained(str(d))
  assert type(plain).__name__ == "GemmaTokenizer"
  assert plain("A Dog")["input_ids"] != plain("a dog")["input_ids"]  # the hub class keeps case
  tokenizer = models.load(str(d)).tokenizer
  assert tokenizer(["A Dog On The Grass"])["input_ids"] == tokenizer(["a dog on the grass"])[
      "input_ids"]
  spiece = models.load(siglip64_dir).tokenizer  # SigLIP 1: its own tokenizer, as it is
  assert not spiece.lower_case


def test_siglip2_naflex_and_headless_configs_are_refused(siglip64_dir, tmp_path):
  import shutil
  for change, message in ((dict(architectures=["Siglip2Model"], model_type="siglip2"),
                           "architecture \\['Siglip2Model'\\] is not supported"),
                          (dict(vision_config=dict(vision_use_head=False)),
                           "vision_use_head=false")):
    d = shutil.copytree(siglip64_dir, tmp_path / message[:12].replace(" ", "_"))
    with open(d / "config.json") as f:
      config = json.load(f)
    for key, value in change.items():
      config[key] = dict(config[key], **value) if isinstance(value, dict) else value
    with open(d / "config.json", "w") as f:
      json.dump(config, f)
    with pytest.raises(errors.UserError, match=message):
      models.load(str(d))


def test_dcsm_is_refused_in_one_line(siglip64_dir):
  from hierre_jax.dcsm import maps
  with pytest.raises(errors.UserError, match="siglip family has no per-token features"):
    maps.TokenFeatures(siglip64_dir)


def test_re_training_moves_the_text_encoder_and_head_only(tmp_path):
  """RE fine-tuning of a random SigLIP: every text leaf (the head included) moves; the image
  tower and the logit scale and bias do not; the export loads in transformers strictly."""
  import transformers
  config = tiny_train_config.get_config("siglip")
  config.workdir = str(tmp_path / "w")
  config.total_steps = 2
  state = train.train_and_export(config)
  initial = models.load(os.path.join(config.workdir, "random_init")).params
  final = jax.device_get(state.params)
  for key in ("vision_model", "logit_scale", "logit_bias"):
    jax.tree.map(np.testing.assert_array_equal, final[key], initial[key])
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), final["text_model"],
                       initial["text_model"])
  assert all(jax.tree.leaves(moved)) and moved["head"]["kernel"]
  out = os.path.join(config.workdir, "export")
  _, info = transformers.SiglipModel.from_pretrained(out, output_loading_info=True)
  assert not any(info.values()), info
  assert models.family_of(out).name == "siglip"


def test_random_siglip_writes_a_loadable_checkpoint(tmp_path):
  """config.random_init.family='siglip': the towers, a SentencePiece vocabulary and a
  SiglipImageProcessor config, read back by transformers."""
  import transformers
  out = models.FAMILIES["siglip"].write_random(
      str(tmp_path), SIGLIP_TINY_TEXT, TINY_VISION, TINY_VISION["hidden_size"])
  assert models.load(out).family.name == "siglip"
  processor = transformers.AutoProcessor.from_pretrained(out)
  assert processor.image_processor.size == {"height": 32, "width": 32}
  assert_parity(out)


def test_the_preprocessors_resample_filter_is_honoured(siglip64_dir, tmp_path, rng):
  """SigLIP 2 ships "resample": 2 (bilinear): pixels as transformers' SiglipImageProcessor
  gives them with that filter, not bicubic's; a filter number PIL lacks is refused."""
  import shutil
  import transformers
  from PIL import Image
  from hierre_jax.models import siglip
  d = shutil.copytree(siglip64_dir, tmp_path / "bilinear")
  siglip.write_preprocessor_config(models.load(siglip64_dir).preprocessing, str(d))
  path = d / "preprocessor_config.json"
  config = json.loads(path.read_text())
  config["resample"] = 2
  path.write_text(json.dumps(config))
  model = models.load(str(d))
  assert model.preprocessing.resample == 2
  image = Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8))
  processor = transformers.SiglipImageProcessor.from_pretrained(str(d))
  want = processor(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
  np.testing.assert_allclose(model.preprocessing.preprocess(image), want, atol=1e-5)
  bicubic = models.load(siglip64_dir).preprocessing.preprocess(image)
  assert np.abs(bicubic - want).max() > 0.01
  config["resample"] = 9
  path.write_text(json.dumps(config))
  with pytest.raises(errors.UserError, match=r"preprocessor_config.json: resample=9 is not a "
                     "PIL filter number"):
    models.load(str(d)).preprocessing  # pylint: disable=expression-not-assigned
