"""Training ablations (SPEC section 6) for each model family: fixed roots, the root trained
alone (each travelling with the model to every evaluation), and the family's contrastive
objective on training images."""
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

import tolerances
from conftest import FAMILIES
from family_matrix import needs_sphere
from hierre_jax import loading
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax import train
from hierre_jax.data import hierarcaps_csv
from hierre_jax.models import root_file
from hierre_jax.models.clip import convert
from hierre_jax.radial import losses
from references import direct_text_embedder, direct_text_features
from tiny_training import run_steps, step_rows, step_terms, tiny_config, tiny_model



def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.reordering
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["mean", "origin", "pretrained"])
def test_fixed_root_never_changes_and_travels_with_the_model(tmp_path, mode, family):
  config = tiny_config(tmp_path, family, total_steps=3, root=mode)
  if mode == "mean":  # (refused in lorentz space: tests/test_entry_point_errors.py)
    needs_sphere(family)
  state = train.train_and_export(config)
  random_init = os.path.join(config.workdir, "random_init")
  initial = models.load(random_init).params
  data = hierarcaps_csv.read_hierarchies(config.train_csv)
  embed = direct_text_embedder(random_init)
  if mode == "mean":  # every text of every row, repeats counted
    texts = [t for p, n in zip(data.positives, data.negatives) for t in p + n]
    mean = embed(texts).astype(np.float64).mean(0)
    want = mean / np.linalg.norm(mean)
  elif mode == "origin":
    want = np.zeros(config.random_init.projection_dim)
  else:
    want = embed([""])[0]
  final = jax.device_get(state.params)
  # Packed embedding against one text at a time: float32 reordering in the tower.
  atol = tolerances.assert_reordered_close(final["root"], want, step_terms(config), scale=1.0)
  if mode != "origin":  # the root of another text (the first training text) misses by far
    tolerances.assert_far(embed(texts[:1] if mode == "mean" else ["a"])[0], want, atol,
                          "another text's root")
  # The text tower trained; the root did not move from its start.
  text_groups = models.family_of(random_init).text_groups
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves([final[g] for g in text_groups]),
      jax.tree.leaves([initial[g] for g in text_groups])))
  from_checkpoint = loading.embedder(config.workdir)
  from_export = loading.embedder(os.path.join(config.workdir, "export"))
  stored = json.load(open(os.path.join(config.workdir, "export", root_file.ROOT_FILE)))
  np.testing.assert_array_equal(np.float32(stored["root"]), final["root"])
  for embedder in (from_checkpoint, from_export):
    feats, root = embedder.texts(["a dog"])
    np.testing.assert_array_equal(root, final["root"])
    assert feats.shape == (1, config.random_init.projection_dim)
    assert embedder.texts([])[0].shape == (0, config.random_init.projection_dim)
  # The suite's evaluators see the stored root, not the empty string's embedding.
  empty = from_export.texts([""])[0][0]
  assert not np.allclose(empty, final["root"])


def test_export_without_a_root_removes_a_stale_root_file(tmp_path):
  config = tiny_config(tmp_path)
  model_dir = tiny_model(config, str(tmp_path / "m"))
  _, params, _ = convert.load_clip(model_dir)
  hf_config = convert.load_hf_config(model_dir)
  out = str(tmp_path / "export")
  convert.export_clip({**params, "root": np.ones(16, np.float32)}, hf_config, out, model_dir)
  assert loading.embedder(out).texts([])[1].tolist() == [1.0] * 16
  convert.export_clip(params, hf_config, out, model_dir)
  assert not os.path.exists(os.path.join(out, root_file.ROOT_FILE))
  with open(os.path.join(out, root_file.ROOT_FILE), "w") as f:
    json.dump({"root": [1.0, 2.0]}, f)
  with pytest.raises(ValueError, match=r"re_root.json: the root must be 16 finite numbers"):
    loading.load(out)


@pytest.mark.reordering
@pytest.mark.parametrize("family", FAMILIES)
def test_root_only_training_changes_nothing_but_the_root(tmp_path, family):
  config = tiny_config(tmp_path, family, lr=1e-2, root="pretrained", trainable="root")
  model_dir = tiny_model(config, str(tmp_path / "m"))
  step_losses, start, final, _ = run_steps(config, model_dir, jax.devices()[:1], 4,
                                           same_batch=True)
  start_root = direct_text_features(model_dir, [""], start)[0]
  tolerances.assert_reordered_close(start["root"], start_root, step_terms(config), scale=1.0)
  assert np.abs(final["root"] - start["root"]).max() > 1e-3
  assert_trees_equal({k: v for k, v in final.items() if k != "root"},
                     {k: v for k, v in start.items() if k != "root"})
  assert step_losses[-1] < step_losses[0]  # the root alone lowers the loss of a fixed batch


def write_images(folder, names, size=32, seed=0):
  """Distinct random RGB images under `folder`: each a random colour with noise."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for name in names:
    pixels = rng.integers(0, 256, 3) + rng.normal(0, 30, (size, size, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(folder, name))


@pytest.mark.parametrize("family", FAMILIES)
def test_contrastive_step_matches_its_definition_and_lowers_its_loss(tmp_path, family):
  needs_sphere(family)
  config = tiny_config(tmp_path, family, loss="contrastive", lr=3e-3,
                       train_images_dir=str(tmp_path / "img"))
  data = hierarcaps_csv.read_hierarchies(config.train_csv)
  write_images(config.train_images_dir, sorted(set(data.images)))
  model_dir = tiny_model(config, str(tmp_path / "m"))
  step_losses, start, final, _ = run_steps(config, model_dir, jax.devices()[:1], 6,
                                           same_batch=True)
  # Step 0's loss from its definition: the rows of step 0, the text drawn for each, the
  # image of each by the frozen image tower, the checkpoint's logit scale (ALIGN: 1 / T).
  rows = step_rows(model_dir, data)
  drawn = np.random.default_rng([0, 0, 1]).choice(np.arange(4), 8)
  text = direct_text_features(model_dir, [data.positives[r][t] for r, t in zip(rows, drawn)],
                              start)
  embedder = loading.embedder(model_dir)
  image = embedder.images([os.path.join(config.train_images_dir, data.images[r]) for r in rows])
  fam = models.family_of(model_dir)
  want = losses.contrastive(text, image, fam.log_logit_scale(start))
  assert step_losses[0] == pytest.approx(float(want), rel=1e-5)  # L_p is 0 at the start
  assert step_losses[-1] < step_losses[0] - 0.05
  # Only the text tower trained: the image tower, the logit scale and the rest are the start's.
  assert set(final) == set(start)
  for key in set(start) - set(fam.text_groups):
    assert_trees_equal(final[key], start[key])


def test_contrastive_training_names_the_first_missing_image(tmp_path):
  config = tiny_config(tmp_path / "w", loss="contrastive", train_images_dir=str(tmp_path / "img"))
  names = sorted(set(hierarcaps_csv.read_hierarchies(config.train_csv).images))
  write_images(config.train_images_dir, names[2:])
  with pytest.raises(errors.DataError,
                     match=r"img: 2 of the 24 images of .*hierarcaps_sample.csv are missing; "
                           r"the first is \S+\.jpg \(row \d+"):
    train.train_and_export(config)
  assert not (tmp_path / "w").exists()
