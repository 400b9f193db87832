"""Contrastive training of both towers (hierre_jax.contrastive): the loss, a short run that
moves both towers and exports a model transformers loads, and bad pairs files."""
import csv
import os

import jax
import numpy as np
import pytest

import tolerances
from hierre_jax import contrastive
from hierre_jax import errors
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
  exported = models.load(str(tmp_path / "run" / "hf_export")).params
  for group in ("text_model", "vision_model", "visual_projection", "text_projection"):
    assert not np.allclose(jax.tree.leaves(start[group])[0], jax.tree.leaves(exported[group])[0])
  np.testing.assert_array_equal(np.asarray(jax.tree.leaves(state.params["vision_model"])[0]),
                                jax.tree.leaves(exported["vision_model"])[0])
  metrics = [line for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert any("eval/i2t_accuracy" in line for line in metrics)
  import transformers
  transformers.CLIPModel.from_pretrained(str(tmp_path / "run" / "hf_export"))


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
  exported = models.load(str(tmp_path / "run" / "hf_export"))
  for group in ("textual", "visual", "textual_proj", "visual_proj", "curv", "textual_alpha"):
    assert not np.allclose(jax.tree.leaves(start[group])[0],
                           jax.tree.leaves(exported.params[group])[0]), group
  for group in ("pixel_mean", "pixel_std"):  # stored statistics, not trained
    np.testing.assert_array_equal(start[group], exported.params[group])
  assert np.log(0.1) <= exported.params["curv"] <= np.log(10.0)
  assert exported.params["textual_alpha"] <= 0 and exported.params["visual_alpha"] <= 0
  state = torch.load(str(tmp_path / "run" / "hf_export" / random_init.FILE), weights_only=True)
  meru_twin.twin_of(state["model"], exported.config)  # loads strictly
  config.update(workdir=str(tmp_path / "clip"), loss="meru")
  config.random_init = shapes_config(data, tmp_path, 1).random_init
  with pytest.raises(errors.ConfigError, match=r"config.loss='meru': defined on the lorentz; "):
    contrastive.train(config)


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
