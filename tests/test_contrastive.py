"""Contrastive training of both towers (hierre_jax.contrastive): the loss, a short run that
moves both towers and exports a model transformers loads, and bad pairs files."""
import csv
import json
import os

import jax
import numpy as np
import pytest

import tolerances
from hierre_jax import contrastive
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax.dcsm import procedural


@pytest.mark.reordering
def test_contrastive_loss_counts_equal_captions_as_positives():
  rng = np.random.default_rng(0)
  image, text = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  caption = np.array([0, 1, 0, 2])  # rows 0 and 2 share their caption
  logits = np.exp(1.5) * image @ text.T
  log_softmax = lambda s: s - np.log(np.exp(s).sum(axis=1, keepdims=True))
  target = (caption[:, None] == caption[None, :]) / np.array([2, 1, 2, 1])[:, None]
  want = (-(target * log_softmax(logits)).sum(1).mean()
          - (target * log_softmax(logits.T)).sum(1).mean()) / 2
  # float32 dots of 3, log-sum-exps and means of 4, twice, against float64
  tolerances.assert_reordered_close(contrastive.contrastive_loss(image, text, 1.5, caption), want,
                                    terms=2 * (3 + 4 + 4), scale=np.abs(logits).max())


def test_meru_loss_equals_the_float64_formulas():
  pytest.importorskip("torch")
  from benchmarks import meru_twin
  rng = np.random.default_rng(1)
  c, log_scale = 0.7, 2.0
  image = meru_twin.exp_map0_64(rng.normal(size=(5, 6)) * 0.5, c)
  text = meru_twin.exp_map0_64(rng.normal(size=(5, 6)) * 0.3, c)
  image[3] = 4 * text[3] + 0.05 * rng.normal(size=6)  # near its caption's ray: in the cone
  caption = np.array([0, 1, 2, 3, 1])
  logits = -np.exp(log_scale) * np.array([[meru_twin.dist64(v[None], t[None], c)[0]
                                           for t in text] for v in image])
  log_softmax = lambda s: s - np.log(np.exp(s).sum(axis=1, keepdims=True))
  target = (caption[:, None] == caption[None, :]) / np.array([1, 2, 1, 1, 2])[:, None]
  cross_entropy = (-(target * log_softmax(logits)).sum(1).mean()
                   - (target * log_softmax(logits.T)).sum(1).mean()) / 2
  violation = np.maximum(meru_twin.oxy_angle64(text, image, c)
                         - meru_twin.half_aperture64(text, c), 0)
  assert violation.max() > 0.1 and (violation == 0).any()  # both sides of the cone's edge
  got, got_logits = contrastive.meru_loss(image, text, log_scale, caption, c)
  np.testing.assert_allclose(got_logits, logits, rtol=1e-5, atol=1e-5 * np.exp(log_scale))
  assert float(got) == pytest.approx(cross_entropy + 0.2 * violation.mean(), rel=1e-5, abs=1e-5)
  text[3] = image[3]  # a pair that meets: the distance's arccosh at 1, the angle undefined
  grads = jax.grad(lambda v: contrastive.meru_loss(v, text, log_scale, caption, c)[0])(image)
  assert np.isfinite(grads).all()


@pytest.mark.reordering
def test_token_loss_equals_filip_written_with_loops():
  """FILIP's late interaction, a loop per (image, text) pair in float64: image-to-text the
  mean over patches of the best word, text-to-image the mean over words of the best patch;
  padding and start/end tokens are not words."""
  rng = np.random.default_rng(4)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  patches, words = unit(rng.normal(size=(3, 5, 4))), unit(rng.normal(size=(3, 6, 4)))
  ends = np.array([4, 2, 5])  # text 1 has one word (index 1)
  ids = np.ones((3, 6), np.int32)
  mask = np.asarray(contrastive.word_mask(ids, ends))
  assert mask.tolist()[1] == [False, True, False, False, False, False]
  caption = np.array([0, 1, 0])
  i2t, t2i = np.zeros((3, 3)), np.zeros((3, 3))
  for i in range(3):
    for j in range(3):
      sim = patches[i] @ words[j][mask[j]].T  # [patches, words of j]
      i2t[i, j], t2i[i, j] = sim.max(axis=1).mean(), sim.max(axis=0).mean()
  log_softmax = lambda s: s - np.log(np.exp(s).sum(axis=1, keepdims=True))
  target = (caption[:, None] == caption[None, :]) / np.array([2, 1, 2])[:, None]
  scale = np.exp(2.0)
  want = (-(target * log_softmax(scale * i2t)).sum(1).mean()
          - (target * log_softmax(scale * t2i.T)).sum(1).mean()) / 2
  got = contrastive.token_contrastive_loss(patches.astype(np.float32),
                                           words.astype(np.float32), mask, 2.0, caption)
  # dots of 4, means of <= 6, log-sum-exps and means of 3, twice, against float64
  tolerances.assert_reordered_close(got, want, terms=2 * (4 + 6 + 3 + 3), scale=scale)
  wrong = contrastive.token_contrastive_loss(patches.astype(np.float32),
                                             words.astype(np.float32), np.ones_like(mask), 2.0,
                                             caption)
  tolerances.assert_far(wrong, want, tolerances.reordered_atol(2 * (4 + 6 + 3 + 3), scale),
                        "every token counted as a word")


def test_sigmoid_loss_equals_siglips_formula_written_with_loops():
  """SigLIP's loss, a loop per (image, text) pair in float64: -log sigmoid(z (t <v_i, t_j> +
  b)), z = +1 for a pair of the same caption, summed over texts, averaged over images."""
  rng = np.random.default_rng(6)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  image, text = unit(rng.normal(size=(4, 5))), unit(rng.normal(size=(4, 5)))
  caption = np.array([0, 1, 0, 2])  # rows 0 and 2 share their caption
  t, b = np.exp(2.3), -1.5
  want = 0.0
  for i in range(4):
    for j in range(4):
      z = 1.0 if caption[i] == caption[j] else -1.0
      want -= np.log(1 / (1 + np.exp(-z * (t * image[i] @ text[j] + b)))) / 4
  got, logits = contrastive.sigmoid_loss(image.astype(np.float32), text.astype(np.float32),
                                         2.3, -1.5, caption)
  # dots of 5, then a sum of 4 and a mean of 4 log-sigmoids (each <= t + |b| in size)
  atol = tolerances.assert_reordered_close(got, want, terms=5 + 8, scale=t + 1.5)
  np.testing.assert_allclose(logits, t * image @ text.T + b, rtol=1e-6, atol=1e-5)
  distinct = contrastive.sigmoid_loss(image.astype(np.float32), text.astype(np.float32), 2.3,
                                      -1.5, np.arange(4))
  tolerances.assert_far(distinct[0], want, atol, "rows of the same caption taken as negatives")


def test_sigmoid_objective_trains_a_siglip_and_refuses_a_clip(tmp_path):
  from conftest import write_tiny_model
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "clip", 3)
  config.loss = "sigmoid"
  with pytest.raises(errors.ConfigError, match=r"config.loss='sigmoid': .*random_init stores no "
                     r"logit_bias"):
    contrastive.train(config)
  assert not os.path.exists(config.workdir)  # a refused run leaves no workdir it made
  start = write_tiny_model("siglip", str(tmp_path / "siglip_start"))
  config.random_init = None
  config.update(model=start, workdir=str(tmp_path / "run"), lr=3e-3, total_steps=6)
  contrastive.train(config)
  before, after = models.load(start), models.load(str(tmp_path / "run" / "export"))
  for group in ("text_model", "vision_model", "logit_scale", "logit_bias"):
    assert not np.allclose(jax.tree.leaves(before.params[group])[0],
                           jax.tree.leaves(after.params[group])[0]), group
  batch = contrastive.PairData(config.train_csv, before.tokenizer, before.preprocessing,
                               before.max_length).batch(0, 16, 0)
  assert "positions" not in batch  # regions are read for the grounding loss only
  loss_fn = contrastive.make_loss_fn(before, "sigmoid")
  assert float(loss_fn(after.params, batch)[0]) < float(loss_fn(before.params, batch)[0]) - 0.1
  import transformers
  transformers.SiglipModel.from_pretrained(str(tmp_path / "run" / "export"))


def shapes_config(data_dir, workdir, steps):
  from configs.contrastive import shapes
  config = shapes.get_config()
  config.random_init.text.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
  config.random_init.vision.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   image_size=32)
  config.random_init.projection_dim = 16
  config.train_csv = os.path.join(data_dir, "train", "captions.csv")
  config.eval.csv = os.path.join(data_dir, "val", "captions.csv")
  config.workdir, config.total_steps, config.batch_size = str(workdir), steps, 16
  config.warmup_steps, config.log_every, config.checkpoint_every = 2, 2, 4
  return config


def test_training_moves_both_towers_and_exports(tmp_path):
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "run", 6)
  state = contrastive.train(config)
  start = models.load(str(tmp_path / "run" / "random_init")).params
  exported = models.load(str(tmp_path / "run" / "export")).params
  for group in ("text_model", "vision_model", "visual_projection", "text_projection"):
    assert not np.allclose(jax.tree.leaves(start[group])[0], jax.tree.leaves(exported[group])[0])
  np.testing.assert_array_equal(np.asarray(jax.tree.leaves(state.params["vision_model"])[0]),
                                jax.tree.leaves(exported["vision_model"])[0])
  metrics = [line for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert any("eval/i2t_accuracy" in line for line in metrics)
  import transformers
  transformers.CLIPModel.from_pretrained(str(tmp_path / "run" / "export"))


# Each token-level term: (its config key, the make_loss_fn keyword, a weight to test with).
TOKEN_TERMS = {"tokens": ("token_loss_weight", "token_weight", 0.5),
               "grounding": ("grounding_loss_weight", "grounding_weight", 2.0)}


@pytest.mark.reordering
@pytest.mark.parametrize("term", TOKEN_TERMS)
def test_token_level_term_trains_and_adds_to_the_contrastive_loss(tmp_path, term):
  """A token-level term's weight > 0: the step's loss is the contrastive loss of the towers'
  own pooled features (read here off the token pass) plus the weighted term (FILIP's
  token-wise loss; the grounding loss of the batch's regions, read from captions.csv),
  logged apart; a short run moves both towers and exports."""
  from hierre_jax import grounding
  key, keyword, weight = TOKEN_TERMS[term]
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "run", 4)
  config[key] = weight
  contrastive.train(config)
  model = models.load(str(tmp_path / "run" / "random_init"))
  batch = contrastive.PairData(config.train_csv, model.tokenizer, model.preprocessing,
                               model.max_length, model.pool_index).batch(0, 16, 0)
  encoders, lift, params = model.encoders(), model.geometry.lift, model.params
  ends = model.pool_index(batch["ids"])
  tokens = lift(encoders.text_tokens(params, batch["ids"],
                                     np.arange(batch["ids"].shape[1])[None] <= ends[:, None]))
  patches = lift(encoders.image_tokens(params, batch["pixels"]))[:, 1:]
  plain = contrastive.contrastive_loss(lift(encoders.image(params, batch["pixels"])),
                                       lift(encoders.text(params, batch["ids"])),
                                       params["logit_scale"], batch["caption"])
  if term == "tokens":
    value = contrastive.token_contrastive_loss(patches, tokens,
                                               contrastive.word_mask(batch["ids"], ends),
                                               params["logit_scale"], batch["caption"])
  else:  # every row names at least one drawn object; binding rows name four words
    assert batch["valid"].sum(axis=1).min() >= 1 and batch["valid"].shape[1] == 4
    value = grounding.grounding_loss(patches, tokens, batch["positions"], batch["boxes"],
                                     batch["valid"], params["logit_scale"])
  got, metrics = contrastive.make_loss_fn(model, **{keyword: weight})(params, batch)
  c = model.config.text
  terms = tolerances.tower_terms(c.hidden_size, c.intermediate_size, c.num_layers,
                                 batch["ids"].shape[1], 16) + 3 * 16
  atol = tolerances.assert_reordered_close(got, plain + weight * value, terms,
                                           scale=float(np.exp(params["logit_scale"])))
  tolerances.assert_far(plain + value * (weight + 1), plain + weight * value, atol,
                        "another weight")
  assert float(metrics[f"loss_{term}"]) == pytest.approx(float(value), rel=1e-5)
  logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert all(f"loss_{term}" in m for m in logged if "loss" in m)
  exported = models.load(str(tmp_path / "run" / "export")).params
  for group in ("text_model", "vision_model"):
    assert not np.allclose(jax.tree.leaves(params[group])[0],
                           jax.tree.leaves(exported[group])[0]), group


def test_grounding_needs_a_regions_column(tmp_path):
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=2,
                              test_items=1)
  config = shapes_config(data, tmp_path / "run", 4)
  bare = tmp_path / "bare.csv"
  with open(config.train_csv) as f:
    rows = list(csv.DictReader(f))
  with open(bare, "w", newline="") as f:
    csv.writer(f).writerows([["image", "caption"]] + [
        [os.path.join(os.path.dirname(config.train_csv), r["image"]), r["caption"]]
        for r in rows])
  config.update(train_csv=str(bare), grounding_loss_weight=2.0)
  with pytest.raises(errors.ConfigError, match=r"config.grounding_loss_weight=2.0: .*bare.csv "
                     "has no regions column"):
    contrastive.train(config)
  assert not os.path.exists(tmp_path / "run")


def test_meru_objective_trains_both_towers_and_the_curvature_and_exports_a_pth(tmp_path):
  torch = pytest.importorskip("torch")
  from benchmarks import meru_twin
  from hierre_jax.models.meru import random_init
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "run", 4)
  config.random_init = dict(family="meru", text=dict(hidden_size=32, num_hidden_layers=1),
                            vision=dict(hidden_size=32, num_hidden_layers=1, image_size=32,
                                        patch_size=8), projection_dim=16, seed=0)
  with pytest.raises(errors.ConfigError, match=r"config.loss='contrastive': defined on the "
                     r"sphere; .*random_init lives in lorentz space"):
    contrastive.train(config)
  config.loss, config.lr = "meru", 0.05
  contrastive.train(config)
  start = models.load(str(tmp_path / "run" / "random_init")).params
  exported = models.load(str(tmp_path / "run" / "export"))
  for group in ("textual", "visual", "textual_proj", "visual_proj", "curv", "textual_alpha"):
    assert not np.allclose(jax.tree.leaves(start[group])[0],
                           jax.tree.leaves(exported.params[group])[0]), group
  for group in ("pixel_mean", "pixel_std"):  # stored statistics, not trained
    np.testing.assert_array_equal(start[group], exported.params[group])
  # MERU's fixed position table of the image tower
  np.testing.assert_array_equal(start["visual"]["pos_embed"],
                                exported.params["visual"]["pos_embed"])
  assert np.log(0.1) <= exported.params["curv"] <= np.log(10.0)
  assert exported.params["textual_alpha"] <= 0 and exported.params["visual_alpha"] <= 0
  state = torch.load(str(tmp_path / "run" / "export" / random_init.FILE), weights_only=True)
  meru_twin.twin_of(state["model"], exported.config)  # loads strictly
  config.update(workdir=str(tmp_path / "clip"), loss="meru")
  config.random_init = shapes_config(data, tmp_path, 1).random_init
  with pytest.raises(errors.ConfigError, match=r"config.loss='meru': defined on the lorentz; "):
    contrastive.train(config)


def test_meru_recipe_freezes_the_position_table_and_decays_matrices_only():
  """One AdamW step on zero gradients with weight decay: with MERU's recipe only matrices
  decay (no gain, bias or stored scalar moves), and a frozen leaf stays put whatever its
  gradient; without it every trained leaf decays."""
  import ml_collections
  import optax
  from hierre_jax.trainer import loop
  config = ml_collections.ConfigDict(dict(schedule="constant", lr=0.1, b1=0.9, b2=0.98,
                                          eps=1e-6, weight_decay=0.5, grad_clip_norm=0.0))
  params = {"visual": {"pos_embed": np.ones((1, 5, 4), np.float32),
                       "norm": {"scale": np.ones(4, np.float32)},
                       "kernel": np.ones((4, 4), np.float32)},
            "curv": np.zeros((), np.float32) + 0.3, "pixel_mean": np.ones(3, np.float32)}
  grads = jax.tree.map(np.zeros_like, params)
  grads["visual"]["pos_embed"] = np.ones((1, 5, 4), np.float32)
  def step(**kwargs):
    tx = loop.make_optimizer(config, 10, ("visual", "curv"), **kwargs)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)
  meru = step(frozen=("visual.pos_embed",), decay_matrices_only=True)
  np.testing.assert_array_equal(meru["visual"]["pos_embed"], params["visual"]["pos_embed"])
  np.testing.assert_array_equal(meru["visual"]["norm"]["scale"], 1.0)
  assert float(meru["curv"]) == pytest.approx(0.3)
  assert (np.asarray(meru["visual"]["kernel"]) < 1).all()  # decayed
  plain = step()
  assert (np.asarray(plain["visual"]["norm"]["scale"]) < 1).all()
  assert float(plain["curv"]) < 0.3 and (np.asarray(plain["visual"]["pos_embed"]) < 1).all()
  np.testing.assert_array_equal(plain["pixel_mean"], 1.0)  # not a trained group


def test_a_generated_set_changed_since_make_data_is_refused(tmp_path):
  """The pairs CSV of a make-data folder is read only while the folder's seal verifies (a
  hand-edited captions.csv or image is refused, naming it), before anything is written."""
  from hierre_jax.common import sealed
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "run", 2)
  with open(config.train_csv, "a") as f:
    f.write(open(config.train_csv).read().splitlines()[1] + "\n")
  with pytest.raises(sealed.DamagedError, match=r"train/captions.csv: changed or damaged since "
                     "it was written"):
    contrastive.train(config)
  assert not os.path.exists(config.workdir)
  assert sealed.verify_enclosing(str(tmp_path / "elsewhere.csv")) is None  # not in a sealed set


def test_bad_pairs_file_names_the_row(tmp_path):
  path = tmp_path / "pairs.csv"
  (tmp_path / "a.png").write_bytes(b"")
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows([["image", "caption"], ["a.png", "a star"], ["b.png", "a dog"]])
  with pytest.raises(errors.DataError, match=r"pairs.csv: row 3: no image file .*b.png"):
    contrastive.read_pairs(str(path))
  path.write_text("file,text\na.png,x\n")
  with pytest.raises(errors.DataError, match="needs the columns image and caption"):
    contrastive.read_pairs(str(path))


def test_checkpoints_whose_training_the_trainer_cannot_follow_are_refused(tmp_path):
  """A family says what of a checkpoint's own training the contrastive trainer would not
  follow (`Family.contrastive_refusal`): open_clip's patch dropout, ALIGN's BatchNorm."""
  from conftest import write_tiny_model
  data = procedural.make_data(str(tmp_path / "data"), seed=2, size=32, train_pairs=8,
                              test_items=2)
  config = shapes_config(data, tmp_path / "run", 2)
  config.random_init = None
  dropped = write_tiny_model("open_clip", str(tmp_path / "open_clip"))
  path = os.path.join(dropped, "open_clip_config.json")
  found = json.load(open(path))
  found["model_cfg"]["vision_cfg"]["patch_dropout"] = 0.5
  json.dump(found, open(path, "w"))
  config.model = dropped
  with pytest.raises(errors.UserError, match=r"vision_cfg.patch_dropout=0.5: open_clip drops "
                     r"that share of the image patches in training"):
    contrastive.train(config)
  config.model = write_tiny_model("align", str(tmp_path / "align"))
  with pytest.raises(errors.UserError, match=r"would need its BatchNorm statistics trained"):
    contrastive.train(config)
  assert not os.path.exists(config.workdir)
