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
