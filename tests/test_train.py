"""Training: frozen towers stay bit-identical, 8 devices == 1 device, kill + resume == no kill."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import tiny_train_config
import tolerances
import wrong_inputs
from conftest import RESUME_FAMILIES, shared_file
from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax import models
from hierre_jax import train
from hierre_jax.evaluators import suite
from hierre_jax.models.clip import convert
from hierre_jax.trainer import metric_writer
from runs import ROOT, SHARED_ROOT, kill_at_first_checkpoint, python_env, run_python
from tiny_training import (assert_packed_step_equals, assert_same_updates, count_embedded_images,
                           run_steps, step_rows, step_terms, tiny_config, tiny_model)

FROZEN = ("vision_model", "visual_projection", "logit_scale")


def test_only_text_tower_and_projection_change(tmp_path):
  config = tiny_config(tmp_path, total_steps=3)
  config.eval.test_csv = shared_file("hierarcaps_test.csv")  # evaluation before and after
  state = train.train_and_export(config)
  _, initial, _ = convert.load_clip(os.path.join(config.workdir, "random_init"))
  final = jax.device_get(state.params)
  for key in FROZEN:
    jax.tree.map(np.testing.assert_array_equal, final[key], initial[key])
  for key in models.FAMILIES["clip"].text_groups:
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                           final[key], initial[key]))
    assert all(changed), key  # every text-tower leaf moved
  _, exported, _ = convert.load_clip(os.path.join(config.workdir, "export"))
  jax.tree.map(np.testing.assert_array_equal, exported, final)
  import transformers  # the export is a whole CLIPProcessor directory too
  processor = transformers.CLIPProcessor.from_pretrained(os.path.join(config.workdir, "export"))
  assert processor.image_processor.crop_size["height"] == 32
  from_orbax = loading.load(config.workdir)  # evaluation of a train workdir
  jax.tree.map(np.testing.assert_array_equal, from_orbax.params, final)
  assert from_orbax.checkpoint_step == 3
  assert os.path.exists(os.path.join(from_orbax.model_dir, "vocab.json"))
  rows = metric_writer.read_metrics(config.workdir)
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and "loss_pullback" in r for r in train_rows)
  evals = {r["step"]: r for r in rows if "eval/tau_d" in r}
  assert sorted(evals) == [0, 3]
  for step in (0, 3):
    result = json.loads((tmp_path / f"eval_step_{step}.json").read_text())
    assert result["tau_d"] == pytest.approx(evals[step]["eval/tau_d"])
    assert result["heldout"]["num_rows"] == 23479 - 18770  # expanded rows of the test images
  assert evals[0]["eval/angle_pos_mean"] != evals[3]["eval/angle_pos_mean"]
  seconds = json.loads((tmp_path / "train_summary.json").read_text())["seconds"]
  assert set(seconds) == {"read_data", "load_model", "tokenize", "restore_or_start",
                          "pullback_cache", "compile", "steps", "checkpoints", "eval_step_0",
                          "eval_step_3", "export"}
  assert all(v >= 0 for v in seconds.values()) and seconds["eval_step_0"] > 0.1


def test_in_run_suite_evaluation_is_logged_and_equals_the_offline_suite(tmp_path, monkeypatch):
  hyperlex = os.path.join(SHARED_ROOT, "hyperlex", "hyperlex-all.txt")
  coco = os.path.join(SHARED_ROOT, "coco", "captions_val2017.json")
  if not (os.path.exists(hyperlex) and os.path.exists(coco)):
    pytest.skip("HyperLex or COCO captions not in ../shared")
  config = tiny_config(tmp_path, total_steps=4)
  config.eval.update(suite="hyperlex, coco", data_dir=SHARED_ROOT, every_steps=2,
                     allow_missing_images=True)
  config.eval.paths.coco_images = shared_file("test_images")  # the COCO 1K subset
  embedded = count_embedded_images(monkeypatch)
  train.train_and_export(config)
  assert len(embedded) == 1000  # three evaluations, each image embedded once in the run
  rows = [r for r in metric_writer.read_metrics(config.workdir) if "eval/hyperlex/rho_all" in r]
  assert [r["step"] for r in rows] == [0, 2, 4]
  assert "eval/coco/t2i_r@5" in rows[0] and "eval/coco/num_images" not in rows[0]
  assert rows[0]["eval/hyperlex/rho_all"] != rows[2]["eval/hyperlex/rho_all"]
  final = json.loads((tmp_path / "eval_step_4.json").read_text())
  assert final["coco/num_images"] == 1000 and final["hyperlex/num_pairs"] == 2616
  # The offline suite on the exported model gives the logged numbers.
  offline, = suite.run({"export": loading.embedder(str(tmp_path / "export"))},
                       suite.from_config(config.eval))
  for key in ("hyperlex/rho_all", "hyperlex/rho_nouns", "coco/t2i_r@1", "coco/i2t_r@10"):
    assert rows[-1]["eval/" + key] == pytest.approx(offline[key], abs=1e-6), key
  # Evaluating the workdir reads the run's image features from its store: none embedded.
  assert len(embedded) == 2000  # the export has no store: its 1000 images embedded
  workdir, = suite.run({"workdir": loading.embedder(config.workdir)},
                       suite.from_config(config.eval))
  assert len(embedded) == 2000 and workdir["coco/i2t_r@10"] == offline["coco/i2t_r@10"]


@pytest.mark.parametrize("names, message", [
    ("hierarcaps", r"hierarcaps cannot run in training.*config.eval.test_csv"),
    ("hyperlex,imagenet", r"imagenet cannot run in training; use any of hyperlex, breeds"),
])
def test_in_run_suite_names_are_checked_before_anything_is_written(tmp_path, names, message):
  config = tiny_config(tmp_path / "w")
  config.eval.suite = names
  with pytest.raises(errors.ConfigError, match=message):
    train.train_and_export(config)
  assert not (tmp_path / "w").exists()


def test_in_run_suite_missing_file_fails_before_anything_is_written(tmp_path):
  config = tiny_config(tmp_path / "w")
  config.eval.update(suite="hyperlex", data_dir=str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="nowhere/hyperlex/hyperlex-all.txt"):
    train.train_and_export(config)
  assert not (tmp_path / "w").exists()


@pytest.mark.reordering
def test_length_groups_and_packing_give_the_same_step(tmp_path):
  config = tiny_config(tmp_path, lr=1e-4, length_groups=((0, 1, 2, 3),), pack_texts=False)
  model_dir = tiny_model(config, str(tmp_path / "m"))
  block = run_steps(config, model_dir, jax.devices()[:1], 2)
  config.length_groups = ((0, 1), (2, 3))
  grouped = run_steps(config, model_dir, jax.devices()[:1], 2)
  # The same sums over other paddings: equal up to float32 reordering through the tower.
  atol = tolerances.assert_reordered_close(grouped[0], block[0], step_terms(config))
  assert_same_updates(grouped[2], block[2], block[1], config.lr, 2)
  misordered = run_steps(config, model_dir, jax.devices()[:1], 2,
                         edit_batch=wrong_inputs.groups_misordered)
  tolerances.assert_far(misordered[0], block[0], atol, "texts merged into the wrong tiers")
  config.pack_texts = True
  assert_packed_step_equals(config, model_dir, block)


@pytest.mark.parametrize("family,options", [
    ("clip", dict(pullback_cache=True)), ("clip", dict(pullback_cache=False)),
    ("clip", dict(pullback_cache=False, pack_texts=False)),
    ("clip", dict(tiers=(0, 2, 3), negatives=False, loss="ec", ec_k=0.3, ec_margin=0.2)),
    ("align", dict(pullback_cache=True)), ("align", dict(pullback_cache=False, pack_texts=False)),
    ("meru", dict(pullback_cache=True)), ("meru", dict(pullback_cache=False, pack_texts=False)),
    ("meru", dict(root="origin", loss="ec", ec_k=0.3, ec_margin=0.2)),
    ("siglip", dict(pullback_cache=True)), ("siglip", dict(pullback_cache=False, pack_texts=False)),
    ("open_clip", dict(pullback_cache=True))])
@pytest.mark.reordering
def test_step_loss_equals_the_loss_of_texts_embedded_one_by_one(tmp_path, family, options):
  """The step's batching (texts packed, or padded in length groups with the root riding
  with the first group; the pull-back cache or frozen pass) and its loss options against
  the plain computation, one unpadded text at a time, for each model family."""
  from conftest import write_tiny_model
  from hierre_jax.data import hierarcaps_csv
  from hierre_jax.radial import losses
  from references import direct_text_embedder
  config = tiny_config(tmp_path, **options)
  model_dir = write_tiny_model(family, str(tmp_path / "m"))
  step_losses, start, _, step_pullback = run_steps(config, model_dir, jax.devices()[:1], 1,
                                                   perturb=0.01)
  data = hierarcaps_csv.read_hierarchies(config.train_csv)
  rows = step_rows(model_dir, data)
  texts = [t for r in rows for t in data.positives[r] + data.negatives[r]]
  embed = direct_text_embedder(model_dir)
  emb = embed(texts, start).reshape(8, 8, -1)
  root = embed([""], start)[0]
  emb_orig = embed(texts).reshape(8, 8, -1)
  ec = (config.ec_k, config.ec_margin) if config.loss == "ec" else None
  if config.root == "origin":
    root = np.zeros_like(root)
  loss, metrics = losses.total_loss(emb, root, emb_orig, config.lambda_p, config.lambda_e,
                                    config.lambda_m, config.tiers, config.negatives, ec,
                                    models.load(model_dir).geometry)
  assert float(metrics["loss_pullback"]) > 1e-3
  np.testing.assert_allclose(step_pullback[0], metrics["loss_pullback"], rtol=1e-4)
  np.testing.assert_allclose(step_losses[0], loss, rtol=1e-5)


def test_bfloat16_compute_keeps_float32_state_and_follows_float32(tmp_path):
  config = tiny_config(tmp_path, lr=1e-4)
  model_dir = tiny_model(config, str(tmp_path / "m"))
  fp32 = run_steps(config, model_dir, jax.devices()[:1], 2, perturb=0.01)
  config.compute_dtype = "bfloat16"
  bf16 = run_steps(config, model_dir, jax.devices()[:1], 2, perturb=0.01)
  np.testing.assert_allclose(bf16[0], fp32[0], rtol=3e-2)
  assert bf16[0] != fp32[0]  # computed in bfloat16 indeed
  assert {x.dtype for x in jax.tree.leaves(bf16[2])} == {np.dtype(np.float32)}
  embedder = loading.embedder(model_dir, compute_dtype="bfloat16")
  texts = ["a dog on the grass", "a cat", ""]
  low, high = embedder.texts(texts)[0], loading.embedder(model_dir).texts(texts)[0]
  assert low.dtype == np.float32 and 0 < np.abs(low - high).max() < 3e-2


@pytest.mark.reordering
def test_pullback_cache_gives_the_same_step(tmp_path):
  # Training starts away from the frozen tower, so that every text's pull-back gradient is
  # real (at the frozen tower it is 0 up to roundoff, which Adam would amplify).
  config = tiny_config(tmp_path, lr=1e-4, pullback_cache=False)
  model_dir = tiny_model(config, str(tmp_path / "m"))
  recomputed = run_steps(config, model_dir, jax.devices()[:1], 3, perturb=0.01)
  config.pullback_cache = True
  cached = run_steps(config, model_dir, jax.devices()[:1], 3, perturb=0.01)
  assert min(recomputed[3]) > 1e-3  # L_p is far from 0: a wrong target would show
  # The cached features come from other batch shapes: equal up to float32 reordering in the
  # tower. L_p = mean |f - f0|^2 moves by 2 |f - f0| per unit of roundoff in f0.
  terms = step_terms(config)
  pullback_atol = tolerances.assert_reordered_close(
      cached[3], recomputed[3], terms, scale=2 * np.sqrt(max(recomputed[3])))
  atol = tolerances.assert_reordered_close(cached[0], recomputed[0], terms)
  assert_same_updates(cached[2], recomputed[2], recomputed[1], config.lr, 3)
  shifted = run_steps(config, model_dir, jax.devices()[:1], 3, perturb=0.01,
                      edit_tables=wrong_inputs.pullback_targets_shifted)
  tolerances.assert_far(shifted[3], recomputed[3], pullback_atol, "targets of another text")
  tolerances.assert_far(shifted[0], recomputed[0], atol, "targets of another text")


MULTI_DEVICE_SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import tiny_training, tolerances, wrong_inputs
assert jax.device_count() == 8, jax.devices()
config = tiny_training.tiny_config(sys.argv[2], lr=1e-4)
model_dir = tiny_training.tiny_model(config, sys.argv[2] + "/model")
# Started away from the frozen tower: there the pull-back gradient of texts only it sees
# (tier-4 negatives) is roundoff, which Adam turns into device-count-dependent steps.
one = tiny_training.run_steps(config, model_dir, jax.devices()[:1], 3, perturb=0.01)
eight = tiny_training.run_steps(config, model_dir, jax.devices(), 3, perturb=0.01)  # 8 shards
# The batch's means summed per shard, then across shards: float32 reordering.
terms = tiny_training.step_terms(config)
tolerances.assert_reordered_close(eight[0], one[0], terms)
tiny_training.assert_same_updates(eight[2], one[2], one[1], config.lr, 3)
config.pack_texts = False  # padded per length group
eight = tiny_training.run_steps(config, model_dir, jax.devices(), 3, perturb=0.01)
atol = tolerances.assert_reordered_close(eight[0], one[0], terms)
tiny_training.assert_same_updates(eight[2], one[2], one[1], config.lr, 3)
wrong = tiny_training.run_steps(config, model_dir, jax.devices(), 3, perturb=0.01,
                             edit_batch=wrong_inputs.groups_misordered)
tolerances.assert_far(wrong[0], one[0], atol, "texts merged into the wrong tiers")
print("MULTI_DEVICE_OK", json.dumps(one[0]))
"""


@pytest.mark.reordering
def test_eight_devices_match_one_device(tmp_path):
  out = run_python(["-c", MULTI_DEVICE_SCRIPT, ROOT, str(tmp_path)])
  assert "MULTI_DEVICE_OK" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
  losses = json.loads(out.stdout.split("MULTI_DEVICE_OK", 1)[1])
  assert len(set(losses)) == 3  # the parameters really moved between steps


def train_command(workdir, steps, family="clip"):
  return ["-m", "hierre_jax.train", "--config", f"tests/tiny_train_config.py:{family}",
          f"--config.workdir={workdir}", f"--config.total_steps={steps}",
          "--config.checkpoint_every=5", "--config.log_every=5"]


@pytest.mark.parametrize("family", RESUME_FAMILIES)
def test_killed_run_resumes_to_the_same_result(tmp_path, family):
  steps = 40  # the kill comes at the first checkpoint (step 5): 35 steps of margin
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  assert run_python(train_command(straight, steps, family), devices=2).returncode == 0
  proc = subprocess.Popen([sys.executable] + train_command(killed, steps, family), cwd=ROOT,
                          env=python_env(2),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  kill_at_first_checkpoint(proc, killed / "checkpoints")
  assert not (killed / "export").exists()
  resumed = run_python(train_command(killed, steps, family), devices=2)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  summary = json.loads((killed / "train_summary.json").read_text())
  assert 0 < summary["resumed_from"] < steps
  want = models.load(str(straight / "export")).params
  got = models.load(str(killed / "export")).params
  # Bit-identical, the pull-back cache on: its table does not depend on where a run starts.
  assert tiny_train_config.get_config(family).pullback_cache
  jax.tree.map(np.testing.assert_array_equal, got, want)
  rows = metric_writer.read_metrics(str(killed))
  assert [r["step"] for r in rows] == list(range(5, steps + 1, 5))
  assert rows == metric_writer.read_metrics(str(straight))
