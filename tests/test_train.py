"""Training: frozen towers stay bit-identical, 8 devices == 1 device, kill + resume == no kill."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import tiny_train_config
from conftest import shared_file
from hierre_jax import checkpoints, evaluation, metric_writer, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FROZEN = ("vision_model", "visual_projection", "logit_scale")


def tiny_config(workdir, **overrides):
  config = tiny_train_config.get_config()
  config.workdir = str(workdir)
  config.update(overrides)
  return config


def test_only_text_tower_and_projection_change(tmp_path):
  config = tiny_config(tmp_path, total_steps=3)
  config.eval.test_csv = shared_file("hierarcaps_test.csv")  # evaluation before and after
  state = train.train_and_export(config)
  _, initial, _ = checkpoints.load_clip(os.path.join(config.workdir, "random_init"))
  final = jax.device_get(state.params)
  for key in FROZEN:
    jax.tree.map(np.testing.assert_array_equal, final[key], initial[key])
  for key in train.TRAINABLE:
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                           final[key], initial[key]))
    assert all(changed), key  # every text-tower leaf moved
  _, exported, _ = checkpoints.load_clip(os.path.join(config.workdir, "hf_export"))
  jax.tree.map(np.testing.assert_array_equal, exported, final)
  _, from_orbax, info_dir, step = evaluation.load_model(config.workdir)  # evaluation of a train workdir
  jax.tree.map(np.testing.assert_array_equal, from_orbax, final)
  assert step == 3 and os.path.exists(os.path.join(info_dir, "vocab.json"))
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


def run_steps(config, model_dir, devices, num_steps):
  """Runs the jitted train step on a mesh of `devices` -> (losses, initial params, final params)."""
  from hierre_jax import embedding, input_pipeline, sharding
  from hierre_jax import tokenizer as tokenizer_lib
  model_config, params, _ = checkpoints.load_clip(model_dir)
  tok = tokenizer_lib.load_tokenizer(model_dir)
  batches = input_pipeline.TrainBatches(input_pipeline.read_hierarchies(config.train_csv), tok,
                                        8, 0, length_groups=config.length_groups)
  mesh = sharding.make_mesh(devices)
  tx = train.make_optimizer(config, num_steps)
  state, state_sharding = train.create_train_state(jax.tree.map(np.array, params), tx, mesh)
  frozen = jax.device_put(jax.tree.map(np.array, embedding.text_params(params)),
                          sharding.replicated(mesh))
  step = train.make_train_step(model_config, config, tx, embedding.root_ids(tok), mesh,
                               state_sharding)
  losses = []
  for s in range(num_steps):
    state, metrics = step(state, frozen, sharding.put_global_batch(batches.batch(s), mesh))
    losses.append(float(metrics["loss"]))
  kernel = state.params["text_model"]["encoder"]["layers_0"]["mlp"]["fc1"]["kernel"]
  assert len(kernel.sharding.device_set) == len(devices)
  return losses, params, jax.device_get(state.params)


def assert_same_updates(got, want, before, lr, steps):
  def compare(path, a, b, initial):
    name = jax.tree_util.keystr(path)
    if "k_proj" in name and "bias" in name:
      # Softmax ignores a shift shared by all keys: this gradient is 0 up to roundoff, and Adam
      # turns roundoff into steps of up to lr. Both runs must stay within that bound.
      for x in (a, b):
        assert np.abs(x - initial).max() <= steps * lr * 1.01, name
    else:
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=name)
  jax.tree_util.tree_map_with_path(compare, got, want, before)


def tiny_model(config, out_dir):
  from hierre_jax import random_clip
  r = config.random_init
  return random_clip.write_random_clip(out_dir, r.text.to_dict(), r.vision.to_dict(),
                                       r.projection_dim)


def test_length_groups_give_the_same_step(tmp_path):
  config = tiny_config(tmp_path, lr=1e-4, length_groups=((0, 1, 2, 3),))
  model_dir = tiny_model(config, str(tmp_path / "m"))
  block = run_steps(config, model_dir, jax.devices()[:1], 2)
  config.length_groups = ((0, 1), (2, 3))
  grouped = run_steps(config, model_dir, jax.devices()[:1], 2)
  np.testing.assert_allclose(grouped[0], block[0], atol=1e-6, rtol=0)
  assert_same_updates(grouped[2], block[2], block[1], config.lr, 2)


MULTI_DEVICE_SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import test_train
assert jax.device_count() == 8, jax.devices()
config = test_train.tiny_config(sys.argv[2], lr=1e-4)
model_dir = test_train.tiny_model(config, sys.argv[2] + "/model")
one = test_train.run_steps(config, model_dir, jax.devices()[:1], 3)
eight = test_train.run_steps(config, model_dir, jax.devices(), 3)
np.testing.assert_allclose(eight[0], one[0], atol=1e-5, rtol=0)
test_train.assert_same_updates(eight[2], one[2], one[1], config.lr, 3)
print("MULTI_DEVICE_OK", json.dumps(one[0]))
"""


def python_env(devices):
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def run_python(args, devices=8):
  return subprocess.run([sys.executable] + args, env=python_env(devices), cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_eight_devices_match_one_device(tmp_path):
  out = run_python(["-c", MULTI_DEVICE_SCRIPT, ROOT, str(tmp_path)])
  assert "MULTI_DEVICE_OK" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
  losses = json.loads(out.stdout.split("MULTI_DEVICE_OK", 1)[1])
  assert len(set(losses)) == 3  # the parameters really moved between steps


def train_command(workdir, steps):
  return ["-m", "hierre_jax.train", "--config", "tests/tiny_train_config.py",
          f"--config.workdir={workdir}", f"--config.total_steps={steps}",
          "--config.checkpoint_every=5", "--config.log_every=5"]


def test_killed_run_resumes_to_the_same_result(tmp_path):
  steps = 150
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  assert run_python(train_command(straight, steps), devices=2).returncode == 0
  proc = subprocess.Popen([sys.executable] + train_command(killed, steps), cwd=ROOT,
                          env=python_env(2),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt = killed / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir()):
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  assert not (killed / "hf_export").exists()
  resumed = run_python(train_command(killed, steps), devices=2)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  summary = json.loads((killed / "train_summary.json").read_text())
  assert 0 < summary["resumed_from"] < steps
  _, want, _ = checkpoints.load_clip(str(straight / "hf_export"))
  _, got, _ = checkpoints.load_clip(str(killed / "hf_export"))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0), got, want)
  rows = metric_writer.read_metrics(str(killed))
  assert [r["step"] for r in rows] == list(range(5, steps + 1, 5))
  for got_row, want_row in zip(rows, metric_writer.read_metrics(str(straight))):
    assert got_row == pytest.approx(want_row, abs=1e-5)
