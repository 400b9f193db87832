"""ALIGN: parity with transformers' AlignModel on random weights that carry signal (the tiny
configuration of ALIGN_SPEC section 6: every block kind, odd and even image sizes),
conversion both ways, packed text embedding, the Embedder, and bad inputs."""
import json
import os

import jax
import numpy as np
import pytest
import safetensors.numpy

from hierre_jax import embedding
from hierre_jax import errors
from hierre_jax import models
from hierre_jax.data import packing
from hierre_jax.models import hf_io
from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
from hierre_jax.models.align import random_init

TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64)
WORDS = ["a", "photo", "of", "cat", "dog", "on", "the", "grass", "animal"]
LONG = " ".join(["a photo of a dog on the grass"] * 12)  # more than 64 tokens
TEXTS = ["", "a photo of a cat", "dog", LONG]


@pytest.fixture(scope="module")
def align_dir(tmp_path_factory):
  return random_init.write_random_align(str(tmp_path_factory.mktemp("align")), TEXT,
                                        random_init.TINY_VISION, 40, words=WORDS)


def reference(model_dir, texts, pixels):
  """transformers' AlignModel in PyTorch: (unnormalised text features, unnormalised image
  features, logits_per_text), texts padded to 64 with their attention mask."""
  torch = pytest.importorskip("torch")
  import transformers
  model = transformers.AlignModel.from_pretrained(model_dir).eval()
  tok = transformers.BertTokenizer.from_pretrained(model_dir)
  enc = tok(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
  with torch.no_grad():
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
    text = model.get_text_features(input_ids=enc["input_ids"],
                                   attention_mask=enc["attention_mask"])
    image = model.get_image_features(pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
  return (getattr(text, "pooler_output", text).numpy(),
          getattr(image, "pooler_output", image).numpy(), out.logits_per_text.numpy())


@pytest.mark.parametrize("size", [45, 64])
def test_align_parity_with_transformers(align_dir, size):
  family, config, params, _ = models.load(align_dir)
  assert family.name == "align" and config.vision.blocks()[1][5]  # a residual block exists
  tok = family.load_tokenizer(align_dir)
  ids = np.array(tok(TEXTS, padding="max_length", max_length=64, truncation=True)["input_ids"],
                 np.int32)
  assert list(ids[0, :3]) == [101, 102, 0]  # the root: [CLS] [SEP]
  pixels = np.random.default_rng(size).normal(size=(3, size, size, 3)).astype(np.float32)
  want_text, want_image, want_logits = reference(align_dir, TEXTS, pixels)
  encoders = family.encoders(config)
  text = np.asarray(jax.jit(encoders.text)(params, ids))
  image = np.asarray(jax.jit(encoders.image)(params, pixels))
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  assert (unit(want_image) @ unit(want_image).T)[np.triu_indices(3, 1)].max() < 0.999  # signal
  np.testing.assert_allclose(text, want_text, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(image, want_image, rtol=1e-5, atol=1e-5 * np.abs(want_image).max())
  np.testing.assert_allclose(unit(text), unit(want_text), atol=1e-5)
  np.testing.assert_allclose(unit(image), unit(want_image), atol=1e-5)
  logits = unit(text) @ unit(image).T / float(params["temperature"])
  assert float(params["temperature"]) == pytest.approx(0.05)
  np.testing.assert_allclose(logits, want_logits, atol=2e-4)


def test_align_export_round_trip_is_bit_identical_and_loads_in_transformers(align_dir, tmp_path):
  pytest.importorskip("torch")
  import transformers
  family, _, params, _ = models.load(align_dir)
  out = family.export(params, family.load_hf_config(align_dir), str(tmp_path / "out"), align_dir)
  before = safetensors.numpy.load_file(os.path.join(align_dir, "model.safetensors"))
  after = safetensors.numpy.load_file(os.path.join(out, "model.safetensors"))
  assert set(before) == set(after)
  for key, value in before.items():
    np.testing.assert_array_equal(after[key], value, err_msg=key)
  _, info = transformers.AlignModel.from_pretrained(out, output_loading_info=True)
  assert not any(info.values()), info
  assert transformers.AlignProcessor.from_pretrained(out).tokenizer.model_max_length == 64
  assert json.load(open(os.path.join(out, "config.json")))["architectures"] == ["AlignModel"]


def test_align_base_has_the_published_parameter_count():
  import transformers
  hf = transformers.AlignConfig(text_config={}, vision_config=dict(
      image_size=289, hidden_dim=640, depthwise_padding=[]), projection_dim=640)
  shapes = modeling.variable_shapes(modeling.AlignConfig.from_hf(hf))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert count == 172_117_841  # ALIGN_SPEC 1.4, the paper's 172M (109M text)
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      shapes["params"]["text_model"])) == 109_482_240


def test_align_packed_and_padded_text_equal_one_by_one(align_dir):
  family, config, params, _ = models.load(align_dir)
  tok = family.load_tokenizer(align_dir)
  texts = ["a photo of a cat", "", "dog on the grass", "the animal", LONG, "cat"]
  ids = [list(t) for t in tok(texts, truncation=True, max_length=64)["input_ids"]]
  encode = jax.jit(embedding.text_encoder(config))
  one_by_one = np.stack([np.asarray(encode(params, np.array([t], np.int32)))[0] for t in ids])
  padded = embedding.embed_texts(config, params, tok, texts, batch_size=4)
  np.testing.assert_allclose(padded, one_by_one, atol=1e-5)
  shards = [[(np.array(t, np.int32), 0) for t in ids[:3]], [(np.array(t, np.int32), 0)
                                                            for t in ids[3:]]]
  packed = packing.pack(shards, 64, 0)
  assert packed.ids.shape[1] < 3  # several texts share a row
  got = np.asarray(jax.jit(embedding.packed_text_encoder(config))(params, packed))
  np.testing.assert_allclose(got.reshape(6, -1), one_by_one, atol=1e-5)


def test_embedder_reads_align_like_clip(align_dir):
  embedder = embedding.Embedder.from_path(align_dir, image_batch_size=2)
  feats, root = embedder.texts(["a photo of a cat", "dog"])
  want, _, _ = reference(align_dir, ["", "a photo of a cat", "dog"],
                         np.zeros((1, 45, 45, 3), np.float32))
  unit = want / np.linalg.norm(want, axis=1, keepdims=True)
  np.testing.assert_allclose(root, unit[0], atol=1e-5)
  np.testing.assert_allclose(feats, unit[1:], atol=1e-5)
  from PIL import Image
  image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8))
  assert embedder.images([image, image]).shape == (2, 40)


def test_align_bad_inputs_are_named(align_dir, tmp_path):
  import shutil
  family, config, params, _ = models.load(align_dir)
  with pytest.raises(errors.UserError, match=r"leave a \d+x\d+ EfficientNet feature map, larger "
                     r"than the pooling window hidden_dim=64"):
    family.encoders(config).image(params, np.zeros((1, 1100, 1100, 3), np.float32))
  no_tok = str(tmp_path / "no_tok")
  shutil.copytree(align_dir, no_tok)
  os.remove(os.path.join(no_tok, "vocab.txt"))
  with pytest.raises(FileNotFoundError, match="no ALIGN tokenizer files"):
    embedding.Embedder.from_path(no_tok)
  path = os.path.join(no_tok, "model.safetensors")
  tensors = safetensors.numpy.load_file(path)
  del tensors["text_projection.bias"]
  tensors["vision_model.extra.weight"] = np.zeros(2, np.float32)
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(hf_io.CheckpointFormatError, match=r"missing 1 \['text_projection.bias'\]; "
                     r"unexpected 1 \['vision_model.extra.weight'\]"):
    models.load(no_tok)
  assert convert.hf_key_to_path("vision_model.encoder.blocks.3.projection.project_bn."
                                "running_var", 1) == (
      "batch_stats", "vision_model", "encoder", "blocks_3", "projection", "project_bn", "var")


def test_align_packed_step_equals_padded_step_and_keeps_the_image_tower(align_dir, tmp_path):
  from test_train import assert_same_updates, run_steps, tiny_config
  config = tiny_config(tmp_path, lr=1e-4, length_groups=((0, 1, 2, 3),), pack_texts=False,
                       scan_layers=False)
  padded = run_steps(config, align_dir, jax.devices()[:1], 2)
  config.pack_texts = True
  packed = run_steps(config, align_dir, jax.devices()[:1], 2)
  np.testing.assert_allclose(packed[0], padded[0], atol=1e-6, rtol=0)
  assert_same_updates(packed[2], padded[2], padded[1], config.lr, 2)
  for key in ("vision_model", "batch_stats", "temperature"):
    jax.tree.map(np.testing.assert_array_equal, packed[2][key], packed[1][key])
  assert not np.array_equal(packed[2]["text_projection"]["kernel"],
                            packed[1]["text_projection"]["kernel"])


def test_align_trains_exports_and_evaluates_like_clip(tmp_path):
  import transformers
  from configs import align_demo
  from hierre_jax import train
  config = align_demo.get_config()
  config.update(workdir=str(tmp_path), total_steps=3, log_every=1, checkpoint_every=3,
                train_csv=os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                       "hierarcaps_sample.csv"))
  config.random_init.text.update(hidden_size=32, intermediate_size=64)
  config.eval.test_csv = ""
  state = train.train_and_export(config)
  assert int(state.step) == 3
  family, _, exported, _ = models.load(str(tmp_path / "hf_export"))
  assert family.name == "align"
  jax.tree.map(np.testing.assert_array_equal, exported, jax.device_get(state.params))
  _, info = transformers.AlignModel.from_pretrained(str(tmp_path / "hf_export"),
                                                    output_loading_info=True)
  assert not any(info.values()), info
  embedder = embedding.Embedder.from_path(str(tmp_path))  # the train workdir
  assert embedder.checkpoint_step == 3 and embedder.texts(["a dog"])[0].shape == (1, 40)


def test_align_base_shapes_parity(tmp_path):
  """The real EfficientNet-B7 image tower (55 blocks, 640 channels out) with a one-layer
  text tower, on 64 x 64 images (the shapes of the weights do not depend on the image)."""
  d = random_init.write_random_align(str(tmp_path), dict(TEXT, num_hidden_layers=1), dict(
      image_size=289, hidden_dim=640, depthwise_padding=[]), 640, words=WORDS)
  family, config, params, _ = models.load(d)
  assert len(config.vision.blocks()) == 55
  pixels = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
  _, want, _ = reference(d, ["a cat", "dog"], pixels)
  got = np.asarray(jax.jit(family.encoders(config).image)(params, pixels))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  unit = want / np.linalg.norm(want, axis=1, keepdims=True)
  assert unit[0] @ unit[1] < 0.999
