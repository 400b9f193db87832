"""DCSM: per-token features and maps against Hugging Face PyTorch, functional rows by hand,
z-scoring, the scorer CNN against a PyTorch twin, the released checkpoint's import, the
loss, training (loss falls, resume is exact, 8 devices == 1), the benchmark readers and the
multiple-choice harness."""
import collections
import csv
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import tolerances
from conftest import TINY_TOWER_TERMS
from conftest import save_torch_clip
from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import sealed
from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import checkpoint
from hierre_jax.dcsm import evaluate
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import procedural
from hierre_jax.dcsm import scorer
from hierre_jax.dcsm import scoring
from hierre_jax.dcsm import training
from hierre_jax.dcsm import validation
from hierre_jax.evaluators import multiple_choice
from hierre_jax.trainer import metric_writer
from runs import python_env
from tiny_training import dcsm_config

torch = pytest.importorskip("torch")
from fixtures import make_dcsm_release_4_26  # pylint: disable=g-import-not-at-top (needs torch)

ROOT = os.path.join(os.path.dirname(__file__), "..")
CAPTIONS = ["A picture of a circle above a star", "", "a cyan circle above a star without a",
            "no dog is not here " * 6, "x"]


@pytest.fixture(scope="module")
def features(tiny_clip_dir):
  return maps.TokenFeatures(tiny_clip_dir, batch_size=4)


@pytest.fixture(scope="module")
def pictures():
  rng = np.random.default_rng(0)
  return [Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
  return procedural.make_data(str(tmp_path_factory.mktemp("shapes")), seed=1, size=32,
                              train_pairs=12, test_items=6)


def unit(x):
  return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.reordering
def test_token_features_and_maps_equal_hugging_face(tiny_clip_dir, features, pictures):
  import transformers
  model = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
  ids, mask = features.tokenize(CAPTIONS)
  assert ids.shape == (len(CAPTIONS), maps.COLUMNS) and mask[1].sum() == 2
  pixels = torch.tensor(np.stack([features.preprocessing.preprocess(p) for p in pictures])
                        ).permute(0, 3, 1, 2)
  with torch.no_grad():
    text = model.text_model(input_ids=torch.tensor(ids, dtype=torch.long),
                            attention_mask=torch.tensor(mask)).last_hidden_state
    want_text = unit(model.text_projection(text)).numpy()
    vision = model.vision_model(pixel_values=pixels).last_hidden_state
    want_image = unit(model.visual_projection(model.vision_model.post_layernorm(vision))).numpy()
    cosine = (unit(model.get_image_features(pixel_values=pixels).pooler_output) @ unit(
        model.get_text_features(input_ids=torch.tensor(ids, dtype=torch.long),
                                attention_mask=torch.tensor(mask)).pooler_output).T).numpy()
  np.testing.assert_allclose(features.texts(CAPTIONS), want_text, atol=1e-5)  # pads included
  np.testing.assert_allclose(features.images(pictures), want_image, atol=1e-5)
  dense = maps.dense_maps(features, pictures, CAPTIONS, functional_rows=False)
  assert dense.shape == (3, len(CAPTIONS), features.rows, maps.COLUMNS) == (3, 5, 17, 30)
  np.testing.assert_allclose(dense, np.einsum("irp,ctp->icrt", want_image, want_text), atol=1e-5)
  eos = ids.argmax(axis=1)  # the first end-of-text token (also the pad token)
  np.testing.assert_allclose(dense[:, np.arange(len(CAPTIONS)), 0, eos], cosine, atol=1e-5)


@pytest.mark.reordering
def test_dense_maps_reads_paths_and_applies_functional_rows(tiny_clip_dir, tmp_path, pictures):
  paths = []
  for i, picture in enumerate(pictures[:2]):
    paths.append(str(tmp_path / f"{i}.png"))
    picture.save(paths[-1])
  plain = maps.dense_maps(tiny_clip_dir, paths, CAPTIONS[:1], functional_rows=False)
  table = maps.functional_table(17)
  edited = maps.dense_maps(tiny_clip_dir, paths, CAPTIONS[:1])
  np.testing.assert_allclose(edited[:, 0, :, 5], np.broadcast_to(table[0], (2, 17)))  # "above"
  keep = [c for c in range(maps.COLUMNS) if c != 5]
  # Two jitted programs (with and without the edit) may fuse the towers apart: float32
  # reordering along the tiny tower; a functional row written into a kept column misses by far.
  atol = tolerances.assert_reordered_close(edited[..., keep], plain[..., keep], TINY_TOWER_TERMS,
                                           scale=1.0)
  tolerances.assert_far(edited[..., keep[4:]], plain[..., keep[3:-1]], atol,
                        "a kept column shifted by one")
  z = maps.dense_maps(tiny_clip_dir, paths, CAPTIONS[:1], standardize=True)
  assert abs(z.mean()) < 1e-5 and abs(z.std(ddof=1) - 1) < 1e-5
  with pytest.raises(errors.UserError, match="column_rule"):
    maps.dense_maps(tiny_clip_dir, paths, CAPTIONS[:1], column_rule="words")


@pytest.mark.reordering
def test_functional_table_rows():
  table = maps.functional_table(197)
  assert table.shape == (11, 197)
  tolerances.assert_reordered_close(np.linalg.norm(3 * table - 1, axis=1), np.ones(11),
                                    terms=197)  # a float32 sum of 197 squares
  assert abs(table.mean() - 1 / 3) < 0.01 and table.std() < 0.05


def test_functional_table_is_torchs_first_draws_after_seed_15(monkeypatch):
  """nn.Embedding(11, 197) drawn right after torch.manual_seed(15), then (F.normalize(rows)
  + 1) / 3: the default table equals that where PyTorch is installed (to float32 rounding:
  our normalisation is in float64), numpy's otherwise. (The release's script loads CLIP in
  between, which draws nothing in transformers 5.x but does in its pinned 4.26.)"""
  torch = pytest.importorskip("torch")
  with torch.random.fork_rng():
    torch.manual_seed(15)
    weight = torch.nn.Embedding(11, 197).weight.detach()
  release = ((torch.nn.functional.normalize(weight, p=2, dim=1) + 1) / 3).numpy()
  table = maps.functional_table(197)
  # a float32 sum of 197 squares, a square root, a division, + 1, / 3, of values <= 1
  atol = tolerances.assert_reordered_close(table, release, terms=197 + 4, scale=1.0)
  numpy_table = maps.functional_table(197, generator="numpy")
  tolerances.assert_far(numpy_table, release, atol, "numpy's draws")
  tolerances.assert_far(maps.functional_table(197, seed=16), release, atol, "another seed")
  monkeypatch.setattr(maps.importlib.util, "find_spec", lambda name: None)
  np.testing.assert_array_equal(maps.functional_table(197), numpy_table)
  with pytest.raises(errors.UserError, match="table_generator='torch': PyTorch is not "
                     "installed"):
    maps.functional_table(197, generator="torch")
  with pytest.raises(errors.UserError, match=r"table_generator='jax': use one of torch, numpy"):
    maps.functional_table(197, generator="jax")


def test_column_sources_by_hand(tok):
  caption = "a cyan circle above a star"  # cyan is two BPE tokens: cy an
  ident = list(range(maps.COLUMNS))
  # release: column 3 = the WORD index of "above" (here the token "an", not "above")
  assert list(maps.column_sources(caption, tok, "release")) == ident[:3] + [-1] + ident[4:]
  # token: columns start token, a, cy, an, circle, above -> column 5
  assert list(maps.column_sources(caption, tok, "token")) == ident[:5] + [-1] + ident[6:]
  # insert: a column at word index 3, the rest shifted right, the last dropped
  assert list(maps.column_sources(caption, tok, "insert")) == ident[:3] + [-1] + ident[3:29]
  # several words act in list order, each at its first occurrence; "no" is word 7 (-8)
  two = "a circle but not a star not no"
  assert list(maps.column_sources(two, tok, "release"))[:8] == [0, 1, -10, -7, 4, 5, 6, -8]
  # insert: "not" at 3, then "no" at 7, then "but" at 2, each into the columns so far
  assert list(maps.column_sources(two, tok, "insert"))[:9] == [0, 1, -10, 2, -7, 3, 4, 5, -8]
  # case-sensitive, punctuation attached prevents a match, words past 30 columns ignored
  for caption in ("Above the line", "a star above, a circle", "x " * 40 + "above"):
    assert list(maps.column_sources(caption, tok, "release")) == ident
  with pytest.raises(ValueError, match="column_rule"):
    maps.column_sources(caption, tok, "nope")


@pytest.mark.reordering
def test_with_functional_rows_and_standardize():
  rng = np.random.default_rng(0)
  block = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
  table = rng.normal(size=(11, 4)).astype(np.float32)
  sources = np.tile(np.arange(6), (3, 1))
  sources[1, 2] = -3  # caption 1, column 2 <- table row 2
  sources[2] = [0, -1, 1, 2, 3, 4]  # inserted at 1
  out = np.asarray(maps.with_functional_rows(block, sources[None], table))
  np.testing.assert_array_equal(out[:, 0], block[:, 0])
  np.testing.assert_array_equal(out[:, 1, :, 2], np.broadcast_to(table[2], (2, 4)))
  np.testing.assert_array_equal(out[:, 2, :, 2:], block[:, 2, :, 1:5])
  z = np.asarray(maps.standardize(block))
  np.testing.assert_allclose(z, (block - block.mean()) / block.std(ddof=1), rtol=1e-5)
  per = np.asarray(maps.standardize(block, per_map=True))
  tolerances.assert_reordered_close(per.mean(axis=(-2, -1)), np.zeros((2, 3)), terms=4 * 6,
                                    scale=np.abs(per).max())  # float32 means of 24 z-scores
  np.testing.assert_allclose(per.std(axis=(-2, -1), ddof=1), 1, rtol=1e-5)


TorchTwin = make_dcsm_release_4_26.CNN  # the release's CNN, written from the spec


def test_scorer_size_and_pytorch_twin(tmp_path):
  assert scorer.num_params(scorer.init_params(197, 30)) == 3_026_365  # the release's size
  rows = 17
  params = scorer.init_params(rows, 30, seed=1)
  table = maps.functional_table(rows)
  out = checkpoint.save(str(tmp_path / "s"), params, table, {"rows": rows, "columns": 30})
  import safetensors.torch
  state = safetensors.torch.load_file(os.path.join(out, checkpoint.SCORER_FILE))
  np.testing.assert_array_equal(state.pop(checkpoint.TABLE_KEY).numpy(), table)
  twin = TorchTwin(rows).eval()
  twin.load_state_dict(state)  # strict: every key and shape
  x = np.random.default_rng(0).normal(size=(5, rows, 30)).astype(np.float32)
  with torch.no_grad():
    want = twin(torch.tensor(x)).numpy()
  got = scorer.Scorer().apply({"params": params}, x)
  np.testing.assert_allclose(got, want, atol=1e-5)
  loaded, loaded_table, info = checkpoint.load(out)
  np.testing.assert_array_equal(scorer.Scorer().apply({"params": loaded}, x), got)
  assert info["rows"] == rows and loaded_table.shape == (11, rows)
  # dropout in training mode drops whole channels of the conv layers
  drops = scorer.Scorer(0.5).apply({"params": params}, x, train=True,
                                   rngs={"dropout": jax.random.key(0)})
  assert not np.allclose(drops, got)
  del state["fc2.bias"]
  with pytest.raises(errors.UserError, match="fc2.bias: missing"):
    scorer.from_state_dict(state)


def b16like_clip(clip_dir):
  """A tiny PyTorch CLIP with heads of 64 dims (as every OpenAI tower), saved to clip_dir."""
  return save_torch_clip(clip_dir, dict(hidden_size=64, intermediate_size=96,
                                        num_hidden_layers=1, num_attention_heads=1,
                                        eos_token_id=2),
                         dict(hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                              num_attention_heads=1, image_size=32, patch_size=8), 16)


def test_an_epoch_is_one_shuffled_pass_over_each_set(shapes_data):
  blocks = training.Blocks(procedural.read_pairs(shapes_data), 4, 0)
  assert blocks.steps_per_epoch == 3  # 12 pairs per set, 4 a block
  anchors = lambda step: [set(blocks.at(step)["images"][:, 2 * d]) & set(
      blocks.tables[name][0][:, 0]) for d, name in enumerate(training.DATASETS)]
  for epoch in (0, 1):
    steps = [anchors(epoch * 3 + k) for k in range(3)]
    for d in range(3):  # each set's 12 anchors, each once, in the epoch's 3 steps
      assert sorted(i for step in steps for i in step[d]) == sorted(
          blocks.tables[training.DATASETS[d]][0][:, 0])
  assert [anchors(k) for k in range(3)] != [anchors(3 + k) for k in range(3)]  # reshuffled
  np.testing.assert_array_equal(blocks.at(4)["images"], blocks.at(4)["images"])


def test_pytorch_style_initialisation_draws_as_pytorch_layers_do():
  """init="pytorch": every weight and bias uniform in +-1/sqrt(fan_in) (PyTorch's Conv2d and
  Linear defaults); "flax" (the default) keeps Flax's truncated normal and zero biases."""
  flax_params = scorer.init_params(17, 30, seed=2)
  torch_params = scorer.init_params(17, 30, seed=2, init="pytorch")
  fan_in = {"conv1": 9, "conv2": 36, "fc1": 4 * 17 * 30, "fc2": 128}
  for name, fan in fan_in.items():
    bound = 1 / np.sqrt(fan)
    for key in ("kernel", "bias"):
      x = np.asarray(torch_params[name][key])
      assert x.shape == flax_params[name][key].shape and np.abs(x).max() <= bound
    assert not np.asarray(flax_params[name]["bias"]).any()
  fc1 = (np.asarray(torch_params["fc1"]["kernel"]), np.asarray(flax_params["fc1"]["kernel"]))
  assert fc1[0].std() == pytest.approx(1 / np.sqrt(3 * fan_in["fc1"]), rel=0.01)
  assert fc1[1].std() == pytest.approx(1 / np.sqrt(fan_in["fc1"]), rel=0.15)  # truncated
  assert np.asarray(torch_params["fc1"]["bias"]).std() == pytest.approx(
      1 / np.sqrt(3 * fan_in["fc1"]), rel=0.25)  # 128 draws
  with pytest.raises(errors.UserError, match="config.init='kaiming': use one of flax, pytorch"):
    scorer.init_params(17, 30, init="kaiming")


def test_release_checkpoint_import(tmp_path):
  import transformers
  clip_dir = str(tmp_path / "b16like")
  model = b16like_clip(clip_dir)
  twin = TorchTwin(17)
  torch.manual_seed(0)
  logic = torch.nn.Embedding(11, 17)
  ckpt = {"model_state_dict": twin.state_dict(), "external_logic_token_embeddings": logic,
          "clip_state_dict": model.state_dict(),
          "clip_text_tokenizer": transformers.CLIPTokenizer.from_pretrained(clip_dir),
          "optimizer_state_dict": {}, "epoch": 25, "learned_lookup": None}
  path = str(tmp_path / "dcsm_obja_ckpt.pt")
  torch.save(ckpt, path)
  # 64-wide towers are no OpenAI shape and a state dict holds no heads: never guessed.
  with pytest.raises(errors.UserError, match=r"dcsm_obja_ckpt.pt: clip_state_dict's text width "
                     r"64 and vision width 64 is no OpenAI CLIP shape .* --num_heads=TEXT,VISION"):
    checkpoint.import_release(path, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")
  scorer_dir, imported = checkpoint.import_release(path, str(tmp_path / "out"), ["1"])
  params, table, info = checkpoint.load(scorer_dir)
  np.testing.assert_array_equal(table, logic.weight.detach().numpy())
  assert info["column_rule"] == "release" and info["epoch"] == 25
  x = np.random.default_rng(1).normal(size=(3, 17, 30)).astype(np.float32)
  with torch.no_grad():
    want = twin.eval()(torch.tensor(x)).numpy()
  np.testing.assert_allclose(scorer.Scorer().apply({"params": params}, x), want, atol=1e-5)
  np.testing.assert_array_equal(checkpoint.load(path)[1], table)  # the .pt read directly
  features = maps.TokenFeatures(imported)
  ids, mask = features.tokenize(["a star"])
  with torch.no_grad():
    want = unit(model.text_projection(model.text_model(
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(mask)).last_hidden_state)).numpy()
  np.testing.assert_allclose(features.texts(["a star"]), want, atol=1e-5)
  # The release's evaluation reads a set learned_lookup as its list of functional words.
  ckpt.update(learned_lookup=["with", "above", "near"],
              external_logic_token_embeddings=torch.nn.Embedding(3, 17))
  torch.save(ckpt, str(tmp_path / "learned.pt"))
  learned_dir, _ = checkpoint.import_release(str(tmp_path / "learned.pt"),
                                             str(tmp_path / "learned"), ["1", "1"])
  _, learned_table, learned_info = checkpoint.load(learned_dir)
  assert learned_info["functional_words"] == ["with", "above", "near"]
  assert learned_table.shape == (3, 17)
  dense, _ = scoring.load(imported, learned_dir)
  _, sources = dense.captions(["a star with a ring above"])
  # the release rule: the word index is the column; "with" is row 0, "above" row 1
  assert list(sources[0][:7]) == [0, 1, -1, 3, 4, -2, 6]
  checkpoint.write_release(learned_dir, imported, str(tmp_path / "learned_back.pt"),
                           any_backbone=True)
  assert torch.load(str(tmp_path / "learned_back.pt"), weights_only=False)["learned_lookup"] == ["with", "above", "near"]
  for bad in (torch.nn.Embedding(3, 17), ["with", "with", "near"], "with above near"):
    ckpt["learned_lookup"] = bad
    torch.save(ckpt, str(tmp_path / "bad.pt"))
    with pytest.raises(errors.UserError, match="bad.pt: learned_lookup is not a list of "
                       "distinct single words"):
      checkpoint.load(str(tmp_path / "bad.pt"))
  ckpt.update(learned_lookup=["with", "above"])
  torch.save(ckpt, str(tmp_path / "bad.pt"))
  with pytest.raises(errors.UserError, match=r"bad.pt: external_logic_token_embeddings has "
                     r"shape \(3, 17\), expected \(2, 17\)"):
    checkpoint.load(str(tmp_path / "bad.pt"))


def test_release_layout_written_back_loads_in_pytorch_and_round_trips(tmp_path):
  """export-release: the release's dict, loaded strictly by the CNN's twin, nn.Embedding and
  transformers' CLIPModel, and imported back to the same scorer and CLIP."""
  import transformers
  clip_dir = str(tmp_path / "b16like")
  model = b16like_clip(clip_dir)
  params, table = scorer.init_params(17, 30, seed=3), maps.functional_table(17)
  scorer_dir = checkpoint.save(str(tmp_path / "scorer"), params, table,
                               {"rows": 17, "columns": 30, "epoch": 4})
  out = str(tmp_path / "mine.pt")
  with pytest.raises(errors.UserError, match=r"not the release's ViT-B/16 backbone \(text_config"
                     r".hidden_size=64 \(release: 512\).*--any_backbone writes it anyway"):
    checkpoint.write_release(scorer_dir, clip_dir, out)
  said = checkpoint.write_release(scorer_dir, clip_dir, out, any_backbone=True)
  assert said.startswith(f"wrote {out}: scorer 17 rows x 30 columns, 11 functional rows; CLIP "
                         "text 64 wide x 1 layers (1 heads)") and "not the release" in said
  assert sorted(os.listdir(tmp_path)) == ["b16like", "mine.config.json", "mine.pt",
                                          "scorer"]  # no partial left
  ckpt = torch.load(out, weights_only=False)
  twin = TorchTwin(17).eval()
  twin.load_state_dict(ckpt["model_state_dict"])  # strict
  x = np.random.default_rng(2).normal(size=(3, 17, 30)).astype(np.float32)
  with torch.no_grad():
    np.testing.assert_allclose(twin(torch.tensor(x)).numpy(), scorer.Scorer().apply(
        {"params": params}, x), atol=1e-5)
  assert isinstance(ckpt["external_logic_token_embeddings"], torch.nn.Embedding)
  np.testing.assert_array_equal(ckpt["external_logic_token_embeddings"].weight.detach().numpy(),
                                table)
  again = transformers.CLIPModel(model.config)
  missing, unexpected = again.load_state_dict(ckpt["clip_state_dict"], strict=False)
  assert not unexpected and all("position_ids" in k for k in missing)
  for key, value in model.state_dict().items():
    if "position_ids" not in key:
      np.testing.assert_array_equal(ckpt["clip_state_dict"][key].numpy(), value.numpy(), key)
  # The tokenizer as its files' texts: plain strings, which transformers 4.26 unpickles too
  # (launch/dcsm_release_readback.sh loads and scores this file there).
  files = ckpt["clip_text_tokenizer"]
  assert {"vocab.json", "merges.txt"} <= set(files) and all(
      isinstance(v, str) for v in files.values())
  assert files["vocab.json"] == open(os.path.join(clip_dir, "vocab.json")).read()
  assert ckpt["epoch"] == 4 and ckpt["learned_lookup"] is None
  scorer_back, clip_back = checkpoint.import_release(out, str(tmp_path / "back"))
  assert transformers.CLIPTokenizer.from_pretrained(clip_back)("a star")["input_ids"] == \
      transformers.CLIPTokenizer.from_pretrained(clip_dir)("a star")["input_ids"]
  back, back_table, _ = checkpoint.load(scorer_back)
  np.testing.assert_array_equal(back_table, table)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(errors.UserError, match="mine.pt: exists; write the checkpoint to a new "
                     "file"):
    checkpoint.write_release(scorer_dir, clip_dir, out, any_backbone=True)
  with pytest.raises(errors.UserError, match="lies inside the input --model="):
    checkpoint.write_release(scorer_dir, clip_dir, os.path.join(clip_dir, "x.pt"),
                             any_backbone=True)
  other = checkpoint.save(str(tmp_path / "other"), scorer.init_params(50, 30),
                          maps.functional_table(50), {"rows": 50, "columns": 30})
  with pytest.raises(errors.UserError, match="the scorer reads maps of 50 rows; .* gives 17 "
                     "image tokens"):
    checkpoint.write_release(other, clip_dir, str(tmp_path / "new.pt"), any_backbone=True)


def test_heads_no_state_dict_holds_round_trip_through_the_sizes_file(tmp_path):
  """A 128-wide CLIP with 4 heads (configs/contrastive/shapes.py's backbone) exported in the
  release's layout and imported back: the heads come from the .config.json export-release
  writes beside the .pt (width // 64 would give 2 and other features); without that file
  they are refused, never guessed."""
  clip_dir = str(tmp_path / "shapes_like")
  save_torch_clip(clip_dir, dict(hidden_size=128, intermediate_size=96, num_hidden_layers=1,
                                 num_attention_heads=4, eos_token_id=2),
                  dict(hidden_size=128, intermediate_size=96, num_hidden_layers=1,
                       num_attention_heads=4, image_size=32, patch_size=8), 16)
  scorer_dir = checkpoint.save(str(tmp_path / "scorer"), scorer.init_params(17, 30, seed=1),
                               maps.functional_table(17), {"rows": 17, "columns": 30})
  out = str(tmp_path / "new_folder" / "shapes.pt")  # a missing folder is made
  checkpoint.write_release(scorer_dir, clip_dir, out, any_backbone=True)
  _, imported = checkpoint.import_release(out, str(tmp_path / "back"))
  assert json.load(open(os.path.join(imported, "config.json")))["text_config"][
      "num_attention_heads"] == 4
  texts = ["a red star", "a circle above a square"]
  np.testing.assert_allclose(loading.embedder(imported).texts(texts)[0],
                             loading.embedder(clip_dir).texts(texts)[0], atol=1e-6)
  record = tmp_path / "new_folder" / "shapes.config.json"
  sizes = json.loads(record.read_text())
  record.write_text(json.dumps(dict(sizes, text_config=dict(sizes["text_config"],
                                                            hidden_size=64))))
  with pytest.raises(errors.UserError, match=r"shapes.config.json: text hidden_size=64, but "
                     r".*shapes.pt holds 128: the sizes record is another checkpoint's"):
    checkpoint.import_release(out, str(tmp_path / "again"))
  os.remove(record)
  with pytest.raises(errors.UserError, match="text width 128 and vision width 128 is no OpenAI"):
    checkpoint.import_release(out, str(tmp_path / "again"))
  with pytest.raises(errors.UserError, match="--num_heads: 3 text heads do not divide the "
                     "width 128"):
    checkpoint.import_release(out, str(tmp_path / "again"), ["3", "4"])


def test_reading_a_torch_checkpoint_without_torch_says_so(tmp_path, monkeypatch):
  path = tmp_path / "dcsm_obja_ckpt.pt"
  path.write_bytes(b"PK")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(errors.UserError, match="dcsm_obja_ckpt.pt: reading a PyTorch checkpoint "
                     "needs torch"):
    checkpoint.load(str(path))


@pytest.mark.reordering
def test_block_loss_symmetric_and_exact():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(6, 6))
  slots_i, slots_c = rng.permutation(6), rng.permutation(6)
  target = slots_i[:, None] == slots_c[None, :]
  log_softmax = lambda s: s - np.log(np.exp(s).sum(axis=1, keepdims=True))
  want = -(log_softmax(scores)[target].mean() + log_softmax(scores.T)[target.T].mean())
  # float32 log-sum-exps over 6 scores and means over 6 rows, twice, against float64
  close = functools.partial(tolerances.assert_reordered_close, desired=want, terms=4 * 6,
                            scale=np.abs(scores).max() + np.log(6))
  close(training.block_loss(scores, slots_i, slots_c))
  p = rng.permutation(6)  # the same pairs in another order: the same loss
  close(training.block_loss(scores[p][:, p], slots_i[p], slots_c[p]))
  # images and captions exchanged: the same loss
  atol = close(training.block_loss(scores.T, slots_c, slots_i))
  tolerances.assert_far(training.block_loss(scores, slots_i, np.roll(slots_c, 1)), want, atol,
                        "pairs matched to the wrong captions")


EIGHT_DEVICES = """
import sys, json
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
from tiny_training import dcsm_config
from hierre_jax.dcsm import training
from hierre_jax.dcsm import validation
from hierre_jax.trainer import metric_writer
config = dcsm_config(sys.argv[2], sys.argv[3], sys.argv[4], 4)
config.eval.benchmarks = ()
training.train(config)
print("LOSSES", json.dumps([r["loss"] for r in metric_writer.read_metrics(sys.argv[4])]))
"""


@pytest.mark.reordering
def test_training_lowers_the_loss_resumes_exactly_and_shards(tiny_clip_dir, shapes_data,
                                                             tmp_path, monkeypatch):
  # the first 4 steps on 8 simulated devices, beside the 1-device runs below
  eight = subprocess.Popen(
      [sys.executable, "-c", EIGHT_DEVICES, ROOT, tiny_clip_dir, shapes_data,
       str(tmp_path / "eight")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=python_env(8))
  config = dcsm_config(tiny_clip_dir, shapes_data, tmp_path / "straight", 12)
  config.eval.update(validation_pairs=3, train_pairs=2, every_steps=4, at_start=True,
                     select="validation")
  straight = training.train(config)
  rows = [r for r in metric_writer.read_metrics(str(tmp_path / "straight")) if "loss" in r]
  assert rows[-1]["loss"] < rows[0]["loss"]
  block_losses = [k for k in rows[0] if k.startswith("loss/")]
  assert len(block_losses) == 6
  np.testing.assert_allclose(rows[0]["loss"], sum(rows[0][k] for k in block_losses) / 3,
                             rtol=1e-5)
  result = json.loads((tmp_path / "straight" / "eval_step_12.json").read_text())
  assert result["procedural_spatial"]["items"] == 6
  # a run stopped after its step-8 checkpoint, then started again, ends bit-identical
  config.workdir = str(tmp_path / "stopped")
  at = training.Blocks.at
  def stop_at_9(self, step):
    if step == 9:
      raise KeyboardInterrupt
    return at(self, step)
  monkeypatch.setattr(training.Blocks, "at", stop_at_9)
  with pytest.raises(KeyboardInterrupt):
    training.train(config)
  monkeypatch.setattr(training.Blocks, "at", at)
  resumed = training.train(config)
  assert json.loads((tmp_path / "stopped" / "train_summary.json").read_text())[
      "resumed_from"] == 8
  for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  params, _, info = checkpoint.load(str(tmp_path / "stopped" / "scorer"))
  assert info["column_rule"] == "release" and info["backbone"] == tiny_clip_dir
  # killed after the step-8 checkpoint, before that step's evaluation was recorded: the
  # resumed run evaluates step 8 first
  config.workdir = str(tmp_path / "killed_in_eval")
  record = training.record_evaluation
  def kill_at_8(config, step, *args):
    if step == 8:
      raise KeyboardInterrupt
    return record(config, step, *args)
  monkeypatch.setattr(training, "record_evaluation", kill_at_8)
  with pytest.raises(KeyboardInterrupt):
    training.train(config)
  monkeypatch.setattr(training, "record_evaluation", record)
  training.train(config)
  # the exported scorer is the evaluated step of best mean validation pair accuracy (the
  # earliest of equals), the same in all three runs
  val = [r for r in metric_writer.read_metrics(str(tmp_path / "straight"))
         if training.VALIDATION_KEY in r]
  assert [r["step"] for r in val] == [0, 4, 8, 12]
  best = max(val, key=lambda r: (r[training.VALIDATION_KEY], -r["step"]))
  exported = {}
  for run in ("straight", "stopped", "killed_in_eval"):
    params, _, info = checkpoint.load(str(tmp_path / run / "scorer"))
    assert info["chosen"] == {"select": "validation", "step": best["step"],
                              "validation_mean_pair_accuracy": best[training.VALIDATION_KEY]}
    # each improvement on the steps before it kept, the best among them
    improving = [r["step"] for k, r in enumerate(val) if all(
        r[training.VALIDATION_KEY] > e[training.VALIDATION_KEY] for e in val[:k])]
    assert sorted(os.listdir(tmp_path / run / training.SELECTED)) == sorted(
        f"step_{s}" for s in improving) and best["step"] in improving
    exported[run] = params
  for run in ("stopped", "killed_in_eval"):
    for a, b in zip(jax.tree.leaves(exported["straight"]), jax.tree.leaves(exported[run])):
      np.testing.assert_array_equal(a, b)
  dense = scoring.DenseScorer(maps.TokenFeatures(tiny_clip_dir, 8), exported["straight"],
                              checkpoint.load(str(tmp_path / "straight" / "scorer"))[1],
                              training.map_options(config))
  again = validation.PairAccuracy(dense, validation.first_pairs(shapes_data, "val", 3))(
      exported["straight"])
  assert np.mean(list(again.values())) == pytest.approx(best[training.VALIDATION_KEY])
  if best["step"] != 12:  # not the last step's params
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(exported["straight"]), jax.tree.leaves(straight.params)))
  # the stored config refuses a changed computational key
  config.lr = 5e-4
  with pytest.raises(errors.UserError, match="lr: 0.001 -> 0.0005"):
    training.train(config)
  # 8 devices: the same losses as 1 (the constant schedule makes steps 1-4 the same)
  out, err = eight.communicate(timeout=600)
  assert "LOSSES" in out, err[-3000:]
  np.testing.assert_allclose(json.loads(out.split("LOSSES", 1)[1]),
                             [r["loss"] for r in rows[:2]], rtol=1e-4)


def test_pair_accuracy_is_multiple_choice_on_the_pairs_in_the_training_format(
    tiny_clip_dir, shapes_data):
  pairs = validation.first_pairs(shapes_data, "val", 3)
  assert {k: len(v) for k, v in pairs.items()} == dict.fromkeys(procedural.DATASETS, 2)
  items = validation.pair_items(pairs["spatial"])
  pair = pairs["spatial"][0]
  assert [(i.image, i.captions, i.answer) for i in items[:4]] == [
      (pair.image, pair.captions[0], 0), (pair.opposite, pair.captions[0][::-1], 0),
      (pair.image, pair.captions[1], 0), (pair.opposite, pair.captions[1][::-1], 0)]
  assert len(items) == 2 * procedural.VERSIONS * 2
  features = maps.TokenFeatures(tiny_clip_dir, 8)
  options = maps.MapOptions("release", True)
  table = maps.functional_table(features.rows, 15, "numpy")
  for seed in (0, 1):  # two draws of the CNN: not both at one level by chance
    params = scorer.init_params(features.rows, maps.COLUMNS, seed)
    dense = scoring.DenseScorer(features, params, table, options)
    fast = validation.PairAccuracy(dense, pairs)(params)
    for name, chosen in pairs.items():
      assert fast[name] == multiple_choice.evaluate(
          dense, validation.pair_items(chosen))["accuracy"], name


def test_procedural_data_conventions(shapes_data):
  info = json.loads(open(os.path.join(shapes_data, "procedural.json")).read())
  unseen = {(c, s) for s, c in info["unseen_colour"].items()}
  pairs = procedural.read_pairs(shapes_data)
  assert {k: len(v) for k, v in pairs.items()} == {"spatial": 12, "binding": 12, "negation": 12}
  with open(os.path.join(shapes_data, "train", "captions.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 * 12 * 2 * 2  # sets x pairs x (image, opposite) x versions
  assert {k: rows[0][k] for k in ("image", "caption")} == {
      "image": os.path.relpath(pairs["spatial"][0].image, os.path.join(shapes_data, "train")),
      "caption": pairs["spatial"][0].captions[0][0]}
  spatial = pairs["spatial"][0]
  a, rel, b = os.path.basename(spatial.image)[:-4].split("_")
  assert os.path.basename(spatial.opposite) == f"CUTMIX_{a}_{rel}_{b}.png"
  assert spatial.captions[0] == (procedural.spatial_caption(a, rel, b),
                                 procedural.spatial_caption(b, rel, a))
  assert spatial.captions[1][0] == (f"A picture of a {b} "
                                    f"{procedural.RELATIONS[procedural.CONVERSE[rel]]} a {a}")
  for pair in pairs["binding"]:  # training never shows an unseen object-colour combination
    c1, s1, c2, s2 = os.path.basename(pair.image)[:-4].split("_")
    assert not {(c1, s1), (c2, s2), (c2, s1), (c1, s2)} & unseen
  for pair in pairs["spatial"] + pairs["binding"]:
    names = os.path.basename(pair.image)[:-4].split("_")
    assert sorted((names[0], names[2]) if len(names) == 3 else (names[1], names[3])) not in \
        info["unseen_pairs"]
  gen = benchmarks.read("procedural_colour_unseen", shapes_data)
  for item in gen.items:
    words = item.captions[0].split()  # "{c1} {A} and a {c2} {B}"
    assert {(words[0], words[1]), (words[4], words[5])} <= unseen
  negation = benchmarks.read("procedural_negation", shapes_data)
  assert len(negation.items) == 6 and not negation.missing
  assert {i.answer for i in negation.items} <= {0, 1, 2, 3}
  assert all(" and not a " in i.captions[i.answer] or " but no a " in i.captions[i.answer]
             or " without a " in i.captions[i.answer] for i in negation.items)


def recorded_scenes(monkeypatch):
  """{id of each image the canvas renders: its objects [(shape, colour, ...)]}."""
  from hierre_jax.dcsm import drawing
  scenes, render = {}, drawing.Canvas.render

  def recording(self, objects, background):
    image = render(self, objects, background)
    scenes[id(image)] = [tuple(o[:2]) for o in objects]
    return image
  monkeypatch.setattr(drawing.Canvas, "render", recording)
  return scenes


def test_every_distractor_is_false_and_training_never_shows_a_held_out_combination(
    tmp_path, monkeypatch):
  """Against the objects each image was drawn with: no training or validation image holds a
  held-out shape pair or shape colour, and every test distractor is false of its image."""
  scenes = recorded_scenes(monkeypatch)
  saved = {}
  save = procedural.Generator.save

  def saving(self, image, *parts):
    saved[os.path.join(*parts)] = scenes.get(id(image))
    return save(self, image, *parts)
  monkeypatch.setattr(procedural.Generator, "save", saving)
  generator = procedural.Generator(str(tmp_path), seed=0, size=32)
  generator.write_pairs(150, "train")
  generator.write_pairs(25, "val")
  generator.write_test(150)
  drawn = {path: objects for path, objects in saved.items() if objects is not None}
  trained = [o for p, o in drawn.items() if p.split(os.sep)[0] in ("train", "val")]
  assert len(trained) == 2 * 3 * 175
  for objects in trained:
    shapes = {shape for shape, _ in objects}
    assert not any(pair <= shapes for pair in generator.unseen_pairs), objects
    assert not any(generator.unseen_colour[shape] == colour for shape, colour in objects)
  bind = os.path.join("test", "clevr_bind")
  for split in ("val", "gen"):
    with open(tmp_path / bind / f"{split}.csv") as f:
      rows = list(csv.DictReader(f))
    for row in rows:
      colour_of = dict(drawn[os.path.join(bind, "images", row["file_name"])])
      holds = lambda caption: all(colour_of.get(s) == c for c, s in re.findall(
          r"(\w+) (\w+)(?: and a |$)", caption))
      assert holds(row["pos"]), row
      assert not any(holds(row[f"neg_{k}"]) for k in range(4)), row
  for folder, negated_answer in (("negbench", True), ("negbench_present", False)):
    neg = os.path.join("test", folder)
    with open(tmp_path / neg / "COCO_val_mcq_llama3.1_rephrased.csv") as f:
      rows = list(csv.DictReader(f))
    assert len(rows) == 150
    for row in rows:
      shapes = {shape for shape, _ in drawn[os.path.join(neg, row["image_path"])]}
      def holds(caption):
        present = re.fullmatch(r"An image of a (\w+)(?: and a (\w+))?", caption)
        if present:
          return {w for w in present.groups() if w} <= shapes
        o1, o2 = re.fullmatch(r"An image of a (\w+) (?:and not|but no|without) a (\w+)",
                              caption).groups()
        return o1 in shapes and o2 not in shapes
      truths = [holds(row[f"caption_{k}"]) for k in range(4)]
      assert truths == [k == int(row["correct_answer"]) for k in range(4)], row
      answer = row[f"caption_{row['correct_answer']}"]
      assert (" and a " not in answer) == negated_answer, row
      # the two shapes the captions name are both drawn (control) or the first only (test)
      o1, o2 = re.search(r"a (\w+) (?:and not|but no|without) a (\w+)", " ".join(
          row[f"caption_{k}"] for k in range(4))).groups()
      assert (o1 in shapes, o2 in shapes) in ((True, False), (False, True)) \
          if negated_answer else {o1, o2} <= shapes, row
  assert len(generator.unseen_pairs) == procedural.UNSEEN_PAIRS == 6
  uses = collections.Counter(s for pair in generator.unseen_pairs for s in pair)
  assert max(uses.values()) <= 2
  for folder in ("whatsup", "whatsup_gen"):  # one relation per scene: the other three false
    for record in json.load(open(tmp_path / "test" / folder / "controlled_images_dataset.json")):
      a, rel, b = re.fullmatch(r"images/(\w+)_(above|below|left|right)_(\w+)_\d+\.png",
                               record["image_path"]).groups()
      assert [o.split(" a ")[0] for o in record["caption_options"]] == [
          f"a {a} {procedural.RELATIONS[r]}" for r in [rel] + [
              r for r in procedural.RELATIONS if r != rel]]


def write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(value, f)


def touch_image(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", (20, 10), "red").save(path)


WHATSUP_OPTIONS = ["A mug on a table", "A mug under a table", "A mug left of a table",
                   "A mug right of a table"]


def release_layout(root):
  """One root_dir as the release's get_test_dataloaders reads it (DCSM_SPEC section 9), a
  few items of every benchmark with the distributed file and folder names."""
  write_json(f"{root}/controlled_images_dataset.json", [  # whatsup_vlms' data/ folder
      {"image_path": "data/controlled_images/mug_on_table.jpeg", "caption_options":
       WHATSUP_OPTIONS}, {"image_path": "data/controlled_images/cup_left_of_box.jpeg",
                          "caption_options": WHATSUP_OPTIONS}])
  touch_image(f"{root}/controlled_images/mug_above_table.jpeg")  # the release renamed it
  touch_image(f"{root}/controlled_images/cup_left_of_box.jpeg")
  write_json(f"{root}/controlled_clevr_dataset.json", [
      {"image_path": "data/controlled_clevr/cube_under_ball.jpeg", "caption_options":
       WHATSUP_OPTIONS}])
  touch_image(f"{root}/controlled_clevr/cube_below_ball.jpeg")
  write_json(f"{root}/coco_qa_two_obj.json", [[42, "a dog left of a cat", "a cat left of a dog"]])
  touch_image(f"{root}/val2017/000000000042.jpg")
  write_json(f"{root}/vg_qa_one_obj.json", [[7, "a dog on the left", "a dog on the right"]])
  touch_image(f"{root}/vg_images/7.jpg")
  write_json(f"{root}/visual_genome_attribution.json", [
      {"image_path": "1.jpg", "bbox_x": 2, "bbox_y": 1, "bbox_w": 10, "bbox_h": 5,
       "true_caption": "the red door", "false_caption": "the door red"}])
  touch_image(f"{root}/images/1.jpg")
  bind = f"{root}/clevr_bind/two_object"
  for split in ("train", "val", "gen"):
    os.makedirs(f"{bind}/images/{split}", exist_ok=True)
    with open(f"{bind}/{split}.csv", "w", newline="") as f:
      csv.writer(f).writerows([["file_name", "pos", "neg_0", "neg_1", "neg_2", "neg_3"],
                               [f"{split}_0.png", "red cube and a blue sphere", "b", "c", "d",
                                "e"]])
    touch_image(f"{bind}/images/{split}/{split}_0.png")
  negbench = f"{root}/NegBench/evaluation data/images"
  os.makedirs(negbench)
  for name, folder, file in [("COCO_val", "val2017", "000000000139.jpg"),
                             ("VOC2007", "VOC2007/JPEGImages", "000001.jpg")]:
    with open(f"{negbench}/{name}_mcq_llama3.1_rephrased.csv", "w", newline="") as f:
      csv.writer(f).writerows([
          ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
           "correct_answer_template"],
          [f"C:\\Users\\someone\\data\\{folder}\\{file}".replace("/", "\\"), "2", "a", "b",
           "c", "d", "negative"],
          [f"/home/someone/data/{folder}/{file}", "0", "e", "f", "g", "h", "affirmation"]])
    touch_image(f"{root}/{folder}/{file}")
  for name in ("red_cube_blue_ball.png", "green_ring_gray_star.png"):
    touch_image(f"{root}/NCD_colorful_composite_squares/{name}")


def test_benchmark_readers_on_the_release_layout(tmp_path):
  """One --data_dir laid out as the release's root_dir reads every benchmark with every
  image found, in the release's captions and answers."""
  d = str(tmp_path)
  release_layout(d)
  read = {name: benchmarks.read(name, d) for name in benchmarks.READERS
          if name not in ("coco_spatial_1", "vg_spatial_2")}
  for name, bench in read.items():
    assert bench.items and not bench.missing, name
  whatsup = read["whatsup_a"]
  assert [os.path.relpath(i.image, d) for i in whatsup.items] == [
      "controlled_images/mug_above_table.jpeg", "controlled_images/cup_left_of_box.jpeg"]
  assert read["whatsup_b"].items[0].image.endswith("controlled_clevr/cube_below_ball.jpeg")
  assert benchmarks.rewrite(whatsup, whatsup.items[0].captions[1]) == \
      "An image of A mug below a table"
  assert benchmarks.rewrite(whatsup, "A cup in front of a box", release=False, dcsm=True) == \
      "A cup below a box"
  # the substring rewrites come before the prefix: a first word is left as it is
  assert benchmarks.rewrite(whatsup, "top shelf on a bottom shelf", dcsm=True) == \
      "An image of top shelf above a below shelf"
  assert read["coco_spatial_2"].items[0].captions == ("a dog left of a cat",
                                                      "a cat left of a dog")
  for split in ("train", "val", "gen"):
    bind = read[f"clevr_bind_{split}"]
    assert os.path.relpath(bind.items[0].image, d) == \
        f"clevr_bind/two_object/images/{split}/{split}_0.png"
    assert len(bind.items[0].captions) == 5 and bind.prefix == "An image of a "
  vga = read["vg_attribution"].items[0]  # upstream order (false caption first)
  assert vga.answer == 1 and vga.captions[1] == "the red door"
  assert multiple_choice.item_image(vga).size == (10, 5)
  # the release reads items with Image.open(..).convert("RGB"): transparency dropped (the
  # families' reading composites it onto white), a float box rounded as PIL crops it
  rgba = np.zeros((8, 12, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 255
  rgba[:4, :4, 3] = 0  # a transparent corner over red
  Image.fromarray(rgba, "RGBA").save(f"{d}/alpha.png")
  item = benchmarks.Item(f"{d}/alpha.png", ("a", "b"))
  got = np.asarray(multiple_choice.item_image(item))
  assert got[0, 0].tolist() == [200, 0, 0]  # dropped, as convert("RGB")
  from hierre_jax.data import images as image_data
  assert np.asarray(image_data.open_rgb(f"{d}/alpha.png"))[0, 0].tolist() == [255, 255, 255]
  boxed = benchmarks.Item(f"{d}/alpha.png", ("a", "b"), box=(0.6, 1.5, 5.5, 4.4))
  assert multiple_choice.item_image(boxed).size == Image.open(f"{d}/alpha.png").convert(
      "RGB").crop((0.6, 1.5, 6.1, 5.9)).size == (5, 4)  # PIL rounds: (1, 2, 6, 6)
  assert multiple_choice.item_image(whatsup.items[0]) == whatsup.items[0].image  # a path
  for source, folder in (("coco", "val2017"), ("voc", "VOC2007/JPEGImages")):
    neg = read[f"negbench_{source}"]  # file names under the image folder, answers honoured
    assert [os.path.relpath(os.path.dirname(i.image), d) for i in neg.items] == [folder] * 2
    assert [(i.answer, i.group) for i in neg.items] == [(2, "negative"), (0, "affirmation")]
  assert [i.captions for i in read["ncd_1"].items] == [
      ("A picture of a green ring and a gray star", "A picture of a gray ring and a green star"),
      ("A picture of a red cube and a blue ball", "A picture of a blue cube and a red ball")]
  assert [i.captions for i in read["ncd_2"].items] == [
      ("A picture of a gray star and a green ring", "A picture of a green star and a gray ring"),
      ("A picture of a blue ball and a red cube", "A picture of a red ball and a blue cube")]
  assert read["ncd_1"].source == read["ncd_2"].source == os.path.join(
      d, "NCD_colorful_composite_squares")


def test_readers_never_read_an_image_outside_the_data_dir(tmp_path):
  """A record's image outside --data_dir (WhatsUp's "data/..." resolved from the folder
  above, an absolute NegBench path, a "../" name) is missing, never read; a linked image
  folder inside --data_dir is followed."""
  d = str(tmp_path / "data")
  write_json(f"{d}/controlled_images_dataset.json", [
      {"image_path": "data/controlled_images/mug_on_table.jpeg",
       "caption_options": WHATSUP_OPTIONS},
      {"image_path": "../elsewhere/cup.jpeg", "caption_options": WHATSUP_OPTIONS}])
  touch_image(f"{tmp_path}/data/controlled_images_x/unused.jpeg")
  touch_image(f"{tmp_path}/controlled_images/mug_on_table.jpeg")  # beside --data_dir: no
  touch_image(f"{tmp_path}/elsewhere/cup.jpeg")
  whatsup = benchmarks.read("whatsup_a", d)
  assert len(whatsup.items) == len(whatsup.missing) == 2
  touch_image(f"{tmp_path}/coco/val2017/000000000139.jpg")
  os.symlink(f"{tmp_path}/coco/val2017", f"{d}/val2017")  # a user's linked copy: followed
  negbench = f"{d}/NegBench/evaluation data/images"
  os.makedirs(negbench)
  with open(f"{negbench}/COCO_val_mcq_llama3.1_rephrased.csv", "w", newline="") as f:
    csv.writer(f).writerows([
        ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3"],
        ["/somewhere/000000000139.jpg", "0", "a", "b", "c", "d"],
        [f"{tmp_path}/elsewhere/cup.jpeg", "0", "a", "b", "c", "d"]])
  neg = benchmarks.read("negbench_coco", d)
  assert [i.image for i in neg.items] == [f"{d}/val2017/000000000139.jpg", ""]


def test_readers_name_what_does_not_parse_and_keep_the_distributed_counts(tmp_path):
  d = str(tmp_path)
  release_layout(d)
  # NCD: names of another shape, MIRROR files and non-images are passed over as the
  # release's reader does, and said
  before = benchmarks.read("ncd_1", d)
  touch_image(f"{d}/NCD_colorful_composite_squares/red_cube.png")
  touch_image(f"{d}/NCD_colorful_composite_squares/MIRROR_red_cube_blue_ball.png")
  (tmp_path / "NCD_colorful_composite_squares" / "notes.txt").write_text("")
  (tmp_path / "NCD_colorful_composite_squares" / ".DS_Store").write_text("")
  ncd = benchmarks.read("ncd_1", d)
  assert ncd.items == before.items and len(ncd.skipped) == 3
  assert "3 file(s) passed over as the release's reader does" in ncd.count_note
  # NegBench as the release reads it on POSIX: one folder literally named with backslashes,
  # its CSV written with a byte-order mark (the release opens it as utf-8-sig)
  literal = tmp_path / "literal"
  shutil.copytree(tmp_path / "NegBench" / "evaluation data" / "images",
                  literal / "NegBench\\evaluation data\\images")
  csv_path = literal / "NegBench\\evaluation data\\images" / "COCO_val_mcq_llama3.1_rephrased.csv"
  csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
  shutil.copytree(tmp_path / "val2017", literal / "val2017")
  bom = benchmarks.read("negbench_coco", str(literal))
  assert [(i.answer, i.group) for i in bom.items] == [(2, "negative"), (0, "affirmation")]
  assert not bom.missing
  # a missing image stays an item, counted and refused unless allowed
  os.remove(f"{d}/VOC2007/JPEGImages/000001.jpg")
  neg = benchmarks.read("negbench_voc", d)
  assert len(neg.items) == 2 and len(neg.missing) == 2
  with pytest.raises(errors.UserError, match=r"2 of 2 images not found, e.g. "
                     r"'C:\\\\Users"):
    evaluate.usable_items(neg, allow_missing_images=False)
  # the spec's counts: as distributed, nothing to say; fewer, said with the file
  write_json(f"{d}/controlled_clevr_dataset.json", [
      {"image_path": f"data/controlled_clevr/{k}.jpeg", "caption_options": WHATSUP_OPTIONS}
      for k in range(408)])
  full = benchmarks.read("whatsup_b", d)
  assert (len(full.items), full.expected, full.count_note) == (408, 408, "")
  assert benchmarks.read("whatsup_a", d).count_note == (
      f"{d}/controlled_images_dataset.json: 2 items where the distributed benchmark has 412; "
      "its published numbers are not comparable")


def test_evaluation_reports_counts_caveats_and_groups(tiny_clip_dir, tmp_path):
  d = str(tmp_path / "data")
  release_layout(d)
  out = str(tmp_path / "eval")
  result = evaluate.evaluate(tiny_clip_dir, None, ["negbench_voc", "ncd_1"], d, out)
  row = result["benchmarks"]["negbench_voc"]
  assert (row["items_read"], row["items_expected"], row["items_used"]) == (2, 5031, 2)
  groups = row["global_cosine"]["by_group"]
  assert sorted(groups) == ["affirmation", "negative"]
  assert [g["items"] for g in groups.values()] == [1, 1]
  assert np.mean([g["accuracy"] for g in groups.values()]) == row["global_cosine"]["accuracy"]
  text = open(os.path.join(out, "results.md")).read()
  assert "| negbench_voc | 2 (5031) | 0 | 2 | 25.0 |" in text
  assert "| ncd_1 | 2 (-) | 0 | 2 | 50.0 |" in text
  assert ("- negbench_voc: released_checkpoint_third_party was computed with the release's "
          "answer convention (caption_0 taken as the answer); ours reads the correct_answer "
          "column") in text
  assert "- negbench_voc: " + os.path.join(d, "NegBench", "evaluation data", "images",
                                           "VOC2007_mcq_llama3.1_rephrased.csv") in text
  assert "| negbench_voc | affirmation | 1 |" in text


@pytest.mark.parametrize("name, content, message", [
    ("coco_qa_one_obj.json", [[1, "a", "b"], [2, "a"]], "coco_qa_one_obj.json: record 1"),
    ("controlled_clevr_dataset.json", [{"image_path": "x", "caption_options": ["a"]}],
     "record 0: expected 4 non-empty captions"),
    ("vg_qa_two_obj.json", "not json", "not valid JSON"),
])
def test_malformed_records_name_file_and_record(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  bench = {"coco_qa_one_obj.json": "coco_spatial_1", "vg_qa_two_obj.json": "vg_spatial_2",
           "controlled_clevr_dataset.json": "whatsup_b"}[name]
  with pytest.raises(errors.DataError, match=message):
    benchmarks.read(bench, str(tmp_path))


def test_multiple_choice_accuracy_reports_ties_apart():
  scores = np.array([[3.0, 1.0], [1.0, 1.0], [0.0, 2.0], [5.0, 5.0]])
  r = multiple_choice.accuracy(scores, np.array([0, 0, 0, 1]))
  assert (r["accuracy"], r["accuracy_ties_as_correct"], r["ties"]) == (0.25, 0.75, 2)
  assert r["chance"] == 0.5 and r["items"] == 4


def test_evaluate_writes_both_scorers_side_by_side(tiny_clip_dir, shapes_data, tmp_path):
  out = str(tmp_path / "eval")
  params = scorer.init_params(17, 30)
  scorer_dir = checkpoint.save(str(tmp_path / "scorer"), params, maps.functional_table(17),
                               {"rows": 17, "columns": 30, "column_rule": "token"})
  result = evaluate.evaluate(tiny_clip_dir, scorer_dir, ["procedural_spatial_swap",
                                                         "procedural_colour"], shapes_data, out)
  row = result["benchmarks"]["procedural_colour"]
  assert row["items_used"] == 6 and row["dcsm"]["k"] == 5 and row["global_cosine"]["chance"] == 0.2
  assert result["choices"]["column_rule"] == "token"
  saved = json.loads(open(os.path.join(out, "results.json")).read())
  assert saved["benchmarks"]["procedural_spatial_swap"]["dcsm"] == \
      result["benchmarks"]["procedural_spatial_swap"]["dcsm"]
  assert "| procedural_colour | 6 (-) | 0 | 6 | 20.0 |" in open(os.path.join(out,
                                                                  "results.md")).read()
  # the harness's DCSM scores are the CNN on each item's z-scored maps
  features = maps.TokenFeatures(tiny_clip_dir)
  bench = benchmarks.read("procedural_colour", shapes_data)
  item = bench.items[0]
  captions = [benchmarks.rewrite(bench, c, True, True) for c in item.captions]
  dense = scoring.DenseScorer(features, params, maps.functional_table(17),
                              maps.MapOptions("token"))
  got = dense.score([item.image], [tuple(captions)])[0]
  block = maps.dense_maps(features, [item.image], captions, column_rule="token",
                          standardize=True)
  want = scorer.Scorer().apply({"params": params}, block[0])
  np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.reordering
def test_score_gives_every_image_against_every_caption(tiny_clip_dir, tmp_path, pictures,
                                                       monkeypatch):
  """dcsm.score [I, T] equals each image scored as one item of all T captions (the CNN on its
  z-scored maps), or with zscore="all" the CNN on all maps z-scored as one block, however the
  images are batched; bad captions in one line."""
  import hierre_jax.dcsm
  params = scorer.init_params(17, 30)
  scorer_dir = checkpoint.save(str(tmp_path / "scorer"), params, maps.functional_table(17),
                               {"rows": 17, "columns": 30, "column_rule": "token"})
  captions = ["a red square above a circle", "a circle without a square", "two stars"]
  images = pictures[:3]
  got = hierre_jax.dcsm.score(tiny_clip_dir, scorer_dir, images, captions)
  assert got.shape == (3, 3)
  features = maps.TokenFeatures(tiny_clip_dir)
  for i, image in enumerate(images):
    block = maps.dense_maps(features, [image], captions, column_rule="token", standardize=True)
    want = scorer.Scorer().apply({"params": params}, block[0])
    np.testing.assert_allclose(got[i], want, atol=1e-4)
  dense, info = scoring.load(tiny_clip_dir, scorer_dir)
  assert info["column_rule"] == dense.options.column_rule == "token"
  # one image a call: the towers' batches differ (float32 reordering, far below the 1e-4 of
  # the CNN comparison above); images or captions out of order miss by far.
  chunked = dense.score_all(images, captions, pairs_per_call=2)
  np.testing.assert_allclose(chunked, got, atol=1e-4)
  assert np.abs(chunked[::-1] - got).max() > 1e-2 and np.abs(chunked[:, ::-1] - got).max() > 1e-2
  # zscore="all" (get_dcsm_scores): the (3, 3, rows, 30) block z-scored as one, however the
  # images are chunked; unlike each image's own block, and the same for one image.
  block = maps.dense_maps(features, images, captions, column_rule="token", standardize=True)
  want = scorer.Scorer().apply({"params": params}, block.reshape(-1, *block.shape[2:]))
  for pairs_per_call in (256, 2):
    whole = dense.score_all(images, captions, pairs_per_call, zscore="all")
    np.testing.assert_allclose(whole, want.reshape(3, 3), atol=1e-4)
  assert np.abs(whole - got).max() > 1e-2
  np.testing.assert_allclose(hierre_jax.dcsm.score(tiny_clip_dir, scorer_dir, images[:1],
                                                   captions, zscore="all"), got[:1], atol=1e-4)
  with pytest.raises(errors.UserError, match="zscore='images': use one of image, all"):
    dense.score_all(images, captions, zscore="images")
  with pytest.raises(errors.UserError, match="captions: expected a list of non-empty strings"):
    hierre_jax.dcsm.score(tiny_clip_dir, scorer_dir, images, "a caption")
  with pytest.raises(errors.UserError, match="nothing to score: 0 images, 3 captions"):
    hierre_jax.dcsm.score(tiny_clip_dir, scorer_dir, [], captions)
  with pytest.raises(errors.UserError, match=r"images: expected a list of image paths or PIL "
                     r"images, got the one path 'a.jpg' \(pass \['a.jpg'\]\)"):
    hierre_jax.dcsm.score(tiny_clip_dir, scorer_dir, "a.jpg", captions)
  # a scorer trained on another backbone is named (a same-shaped model scores silently else)
  other = checkpoint.save(str(tmp_path / "other_scorer"), params, maps.functional_table(17),
                          {"rows": 17, "columns": 30, "backbone": str(tmp_path / "elsewhere")})
  warned = []
  monkeypatch.setattr(checkpoint.logging, "warning", lambda *a: warned.append(a[0] % a[1:]))
  scoring.load(tiny_clip_dir, scorer_dir)
  assert not warned
  scoring.load(tiny_clip_dir, other)
  assert warned == [f"{other} was trained on the backbone {tmp_path / 'elsewhere'}; scoring with "
                    f"{tiny_clip_dir}: its scores are meaningful only if that is the same model"]


def test_command_line(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(errors.UserError, match="file: cannot be used as the output folder"):
    procedural.make_data(str(tmp_path / "file"))
  out = subprocess.run([sys.executable, "-m", "hierre_jax.dcsm", "evaluate", "--model=x"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      "error: --benchmarks and --data_dir and --output_dir required")


def test_augmentation_is_the_release_s_and_deterministic(tiny_clip_dir, shapes_data, tmp_path):
  from hierre_jax.dcsm import augment
  start = [(0, 0), (31, 0), (31, 31), (0, 31)]
  end = [(1, 0), (30, 1), (31, 30), (0, 31)]
  c = augment.perspective_coefficients(start, end)
  for (x, y), (u, v) in zip(end, start):  # PIL maps each output corner to its input corner
    d = c[6] * x + c[7] * y + 1
    np.testing.assert_allclose([(c[0] * x + c[1] * y + c[2]) / d,
                                (c[3] * x + c[4] * y + c[5]) / d], [u, v], atol=1e-9)
  image = Image.new("RGB", (100, 100), (128, 128, 128))
  noisy = np.array(augment.salt_and_pepper(image, np.random.default_rng(0)))
  assert 0.015 < (noisy == 255).mean() < 0.025 and 0.015 < (noisy == 0).mean() < 0.025
  changed = noisy != 128  # per channel: a pixel is seldom hit in all three channels at once
  assert (changed.any(axis=2).mean() > 0.1) and (changed.all(axis=2).mean() < 0.001)
  once = np.array(augment.augment(image, np.random.default_rng(3)))
  np.testing.assert_array_equal(once, np.array(augment.augment(image, np.random.default_rng(3))))
  # training with augmentation: each step's images drawn from (seed, step), embedded in the step
  config = dcsm_config(tiny_clip_dir, shapes_data, tmp_path / "augmented", 2)
  config.augment, config.eval.benchmarks = True, ()
  state = training.train(config)
  assert int(state.step) == 2
  _, table, info = checkpoint.load(os.path.join(config.workdir, "scorer"))
  assert info["init"] == "flax" and info["table_generator"] == maps.default_table_generator()
  np.testing.assert_array_equal(table, maps.functional_table(table.shape[1]))
  features = maps.TokenFeatures(tiny_clip_dir)
  batches = training.AugmentedBatches(training.Blocks(procedural.read_pairs(shapes_data), 4, 0),
                                      features.preprocessing, 0)
  first = batches(1)
  assert first["pixels"].shape == (8, 6, 32, 32, 3)
  np.testing.assert_array_equal(first["pixels"], batches(1)["pixels"])
  assert not np.array_equal(first["pixels"], batches(2)["pixels"])


def test_global_cosine_harness_works_for_every_family(family_dir, shapes_data, tmp_path):
  result = evaluate.evaluate(family_dir, "", ["procedural_negation"], shapes_data,
                             str(tmp_path / "out"))
  row = result["benchmarks"]["procedural_negation"]
  assert "dcsm" not in row and row["items_used"] == 6
  embedder = loading.embedder(family_dir)
  bench = benchmarks.read("procedural_negation", shapes_data)
  scores = np.stack([np.asarray(embedder.geometry.similarity(
      embedder.images([i.image]), embedder.texts(list(i.captions))[0]))[0] for i in bench.items])
  want = multiple_choice.accuracy(scores, np.array([i.answer for i in bench.items]))
  assert row["global_cosine"] == {**want, "by_group": {"negative": want}}  # one template


def test_generated_data_and_scorers_are_sealed_and_never_used_damaged(shapes_data, tmp_path):
  data = str(tmp_path / "data")
  shutil.copytree(shapes_data, data)
  procedural.read_pairs(data)  # verified
  image = sorted(glob.glob(os.path.join(data, "train", "spatial", "*", "*.png")))[0]
  with open(image, "r+b") as f:
    f.seek(60)
    byte = f.read(1)
    f.seek(60)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(sealed.DamagedError, match=rf"{image}: changed or damaged since it was "
                     "written"):
    procedural.read_pairs(data)
  with pytest.raises(sealed.DamagedError, match=re.escape(image)):
    benchmarks.read("procedural_spatial", data)
  # make-data never merges: a full folder is refused, --overwrite replaces it whole
  with pytest.raises(errors.UserError, match=r"data: not empty; make-data writes a whole new"):
    procedural.make_data(data, seed=2, size=32, train_pairs=4, test_items=4)
  # --overwrite removes only a set as make-data wrote it: a changed one is kept, as is
  # a set with a file of someone else's
  with pytest.raises(errors.UserError, match=r"--overwrite: .*changed or damaged .*nothing was "
                     "deleted"):
    procedural.make_data(data, seed=2, size=32, train_pairs=4, test_items=4, overwrite=True)
  assert os.path.exists(image)
  shutil.rmtree(data)
  shutil.copytree(shapes_data, data)
  open(os.path.join(data, "train", "notes.txt"), "w").write("mine")
  with pytest.raises(errors.UserError, match=r"--overwrite: .*train/notes.txt was not written by "
                     "make-data"):
    procedural.make_data(data, seed=2, size=32, train_pairs=4, test_items=4, overwrite=True)
  os.remove(os.path.join(data, "train", "notes.txt"))
  procedural.make_data(data, seed=2, size=32, train_pairs=4, test_items=4, overwrite=True)
  assert json.load(open(os.path.join(data, "procedural.json")))["seed"] == 2
  assert sealed.verify(data)["train_pairs"] == 4 and not glob.glob(f"{data}.*.tmp")
  record = sealed.verify(data)  # a set of the first generator (no version): refused
  files = sorted(json.load(open(os.path.join(data, sealed.MANIFEST)))["files"])
  sealed.seal(data, files, {k: v for k, v in record.items() if k != "generator"})
  with pytest.raises(errors.UserError, match=r"data: written by procedural generator 1 \(since: "
                     r"2: the colour sets' last distractor is false .*; 3: 6 held-out shape "
                     r"pairs .*\); write the set again"):
    benchmarks.read("procedural_colour", data)
  sealed.seal(data, files, {**record, "generator": 2})  # the one before the negation control
  with pytest.raises(errors.UserError, match=r"generator 2 \(since: 3: 6 held-out"):
    procedural.read_pairs(data)
  procedural.make_data(data, seed=2, size=32, train_pairs=4, test_items=4, overwrite=True)
  # a scorer folder: saved sealed, a changed file refused
  params = scorer.init_params(17, 30)
  out = checkpoint.save(str(tmp_path / "scorer"), params, maps.functional_table(17),
                        {"rows": 17, "columns": 30})
  info = os.path.join(out, checkpoint.INFO_FILE)
  open(info, "a").write(" ")
  with pytest.raises(sealed.DamagedError, match=rf"{info}: changed or damaged"):
    checkpoint.load(out)
  os.remove(os.path.join(out, sealed.MANIFEST))  # its seal removed: refused, not read unverified
  with pytest.raises(sealed.DamagedError, match=r"scorer/sealed.json: no manifest"):
    checkpoint.load(out)


def test_make_data_overwrite_deletes_nothing_it_did_not_write(tmp_path, monkeypatch):
  """--overwrite on a folder of the user's, the current directory or an ancestor of it:
  refused, every file kept; the new set is built beside its target, never inside the cwd."""
  cwd = tmp_path / "work"
  (cwd / "sub").mkdir(parents=True)
  (cwd / "keep.txt").write_text("keep")
  theirs = tmp_path / "theirs"
  theirs.mkdir()
  (theirs / "a.txt").write_text("keep")
  monkeypatch.chdir(cwd / "sub")
  for out, message in ((str(theirs), "holds files make-data did not write"),
                       (".", "is the current directory or holds it"),
                       ("..", "is the current directory or holds it")):
    if out in (".",):
      (cwd / "sub" / "x.txt").write_text("keep")
    with pytest.raises(errors.UserError, match=message):
      procedural.make_data(out, size=32, train_pairs=4, test_items=4, overwrite=True)
  assert (theirs / "a.txt").read_text() == "keep" and (cwd / "keep.txt").exists()
  assert sorted(os.listdir(cwd / "sub")) == ["x.txt"] and sorted(os.listdir(cwd)) == [
      "keep.txt", "sub"]
  os.remove(cwd / "sub" / "x.txt")
  with pytest.raises(errors.UserError, match="is the current directory or holds it"):
    procedural.make_data(".", size=32, train_pairs=4, test_items=4)  # empty, still refused
  procedural.make_data("new", size=32, train_pairs=4, test_items=4)
  assert sorted(os.listdir(".")) == ["new"]  # built beside, renamed into place
  procedural.make_data("new", seed=1, size=32, train_pairs=4, test_items=4, overwrite=True)
  assert procedural.verify("new") is None and sealed.verify("new")["seed"] == 1


def test_evaluate_refuses_too_few_items_another_backbone_and_another_runs_folder(
    tiny_clip_dir, shapes_data, tmp_path):
  data = str(tmp_path / "data")
  shutil.copytree(shapes_data, data)
  whatsup = os.path.join(data, "test", "whatsup", "controlled_images_dataset.json")
  items = json.load(open(whatsup))
  for item in items[1:]:
    os.remove(os.path.join(os.path.dirname(whatsup), item["image_path"]))
  os.remove(os.path.join(data, "sealed.json"))  # a hand-edited set, no longer make-data's
  os.remove(os.path.join(data, "procedural.json"))
  read = benchmarks.read("procedural_spatial", data)
  assert len(read.missing) == len(items) - 1
  with pytest.raises(errors.UserError, match=r"only 1 of \d+ items have their image, fewer than "
                     r"--min_images=100"):
    evaluate.usable_items(read, True)
  assert len(evaluate.usable_items(read, True, min_images=1)) == 1
  with pytest.raises(errors.UserError, match=r"--min_images=0: score at least 1 item"):
    evaluate.usable_items(read, True, min_images=0)
  other = checkpoint.save(str(tmp_path / "other"), scorer.init_params(65, 30),
                          maps.functional_table(65), {"rows": 65, "columns": 30})
  with pytest.raises(errors.UserError, match=r"the scorer reads maps of 65 rows; the model "
                     r"gives 17 image tokens: it was trained on another backbone"):
    evaluate.evaluate(tiny_clip_dir, other, ["procedural_colour"], shapes_data,
                      str(tmp_path / "out"))
  with pytest.raises(errors.UserError, match=r"--output_dir=.* lies inside the input --data_dir"):
    evaluate.evaluate(tiny_clip_dir, "", ["procedural_colour"], shapes_data,
                      os.path.join(shapes_data, "results"))
  out = tmp_path / "theirs"
  out.mkdir()
  (out / "results.json").write_text("{}")
  with pytest.raises(errors.UserError, match=r"holds files not written by this command"):
    evaluate.evaluate(tiny_clip_dir, "", ["procedural_colour"], shapes_data, str(out))
  assert (out / "results.json").read_text() == "{}"


# The release notebook's Figure 1 (notebooks/DCSM_eval.ipynb of Raphoo/DCSM_Ideal_CLIP, cell
# "1. Reproduce Figure 1"): test_image1.jpg against six captions, scored by the released
# scorer (get_dcsm_scores: the "insert" column rule, the (1, 6, 197, 30) block z-scored as one)
# and by CLIP ViT-B/16's global cosine, as the notebook printed them (torch 2.5.1, CUDA 12.1).
FIGURE_1_CAPTIONS = ("red circle blue triangle", "red triangle blue circle",
                     "circle above triangle", "circle below triangle", "circle with triangle",
                     "circle without triangle")
FIGURE_1_DCSM = (6.3090, 6.1073, 3.3570, 2.5674, 4.1543, 2.0319)
FIGURE_1_COSINE = (0.3202, 0.3386, 0.3058, 0.3033, 0.2964, 0.2997)


def release_file(name, *folders):
  """`name` in $DCSM_RELEASE (a clone of the release with its checkpoint) or a folder of it."""
  root = os.environ.get("DCSM_RELEASE", "")
  found = [p for p in (os.path.join(root, *f, name) for f in [()] + [(f,) for f in folders])
           if root and os.path.isfile(p)]
  if not found:
    pytest.skip(f"needs {name}: set DCSM_RELEASE to a folder that holds it (or the release's "
                f"clone, {'/'.join(folders)}/{name})")
  return found[0]


def test_release_notebook_figure_1(tmp_path):
  """The released checkpoint imported (its scorer, its CLIP) scores Figure 1 as the notebook
  printed: the notebook ran on CUDA, where PyTorch's convolutions default to TF32 (10-bit
  mantissa), so the DCSM scores (about 2 to 6, through a 23,640-wide fc1) are held to 0.05 and
  their order exactly; the cosines, printed to 4 decimals, to 2e-4."""
  ckpt = release_file("dcsm_obja_ckpt.pt", "pretrained_models")
  image = release_file("test_image1.jpg", "data")
  scorer_dir, clip_dir = checkpoint.import_release(ckpt, str(tmp_path / "release"))
  scores = scoring.score(clip_dir, scorer_dir, [image], list(FIGURE_1_CAPTIONS),
                         column_rule="insert")[0]
  np.testing.assert_allclose(scores, FIGURE_1_DCSM, atol=0.05)
  assert list(np.argsort(scores)) == list(np.argsort(FIGURE_1_DCSM))
  embedder = loading.embedder(clip_dir)
  cosines = embedder.images([image]) @ embedder.texts(list(FIGURE_1_CAPTIONS))[0].T
  np.testing.assert_allclose(cosines[0], FIGURE_1_COSINE, atol=2e-4)


def test_a_checkpoint_written_by_the_releases_pinned_transformers_imports(tmp_path):
  """tests/fixtures/dcsm_release_4_26.pt was written as the release's save code writes its
  checkpoint, with the versions it pins (transformers 4.26.1, tokenizers 0.13.3;
  launch/dcsm_release_fixture.sh): its pickled slow CLIPTokenizer names classes today's
  transformers lacks (torch.load alone fails on `Trie`). Read with stand-ins for every
  pickled class (nothing of the pickle runs), its table, CNN and CLIP import, the
  tokenizer's own vocabulary is kept, and the CLIP's text features equal what 4.26 computed."""
  import torch
  from runs import ROOT
  fixture = os.path.join(ROOT, "tests", "fixtures", "dcsm_release_4_26.pt")
  want = json.load(open(fixture[:-3] + ".json"))
  assert want["transformers"] == "4.26.1" and want["tokenizers"] == "0.13.3"
  with pytest.raises(Exception, match="Trie"):
    torch.load(fixture, weights_only=False)  # what failed before
  scorer_dir, clip_dir = checkpoint.import_release(fixture, str(tmp_path / "imported"), ["1"])
  _, table, info = checkpoint.load(scorer_dir)
  np.testing.assert_array_equal(table, np.asarray(want["table"], np.float32))
  assert info["epoch"] == 25
  embedder = loading.embedder(clip_dir)
  tokenizer = embedder.model.tokenizer
  assert [tokenizer(t)["input_ids"] for t in want["texts"]] == want["input_ids"]
  features, _ = embedder.texts(want["texts"])
  expected = np.asarray(want["text_features"], np.float32)
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
  np.testing.assert_allclose(features, expected, atol=1e-5)
  # nothing of the pickle's own classes was imported or run
  ckpt = checkpoint._torch_load(fixture)  # pylint: disable=protected-access
  assert isinstance(ckpt["clip_text_tokenizer"], checkpoint.Stub)
  assert ckpt["clip_text_tokenizer"].qualified.endswith("CLIPTokenizer")


def test_negation_picks_name_each_kind_of_caption():
  from benchmarks import dcsm_diagnostics
  kind = dcsm_diagnostics.caption_kind
  true = "An image of a star but no a ring"  # procedural_negation: o1 = star, o2 = ring
  assert [kind(c, true) for c in (true, "An image of a ring but no a star",
                                  "An image of a ring", "An image of a star and a ring")] == [
      "true", "swapped", "o2 alone", "o1 and o2"]
  true = "An image of a star and a ring"  # the control: both drawn
  assert [kind(c, true) for c in (true, "An image of a star without a ring",
                                  "An image of a ring and not a star", "An image of a cross")
          ] == ["true", "o1 not o2", "o2 not o1", "absent shape"]
