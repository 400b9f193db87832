"""The train entry point as 2 real processes on 127.0.0.1 (Gloo CPU collectives), with
in-run HierarCaps evaluation, against 1 process with the same global batch; and
`hierre_jax.evaluate` on the resulting workdir."""
import json
import os
import socket
import subprocess
import sys

import pytest

import tiny_train_config
from conftest import shared_file
from hierre_jax.models.clip import convert
from hierre_jax.trainer import metric_writer
from runs import ROOT, python_env, small_eval_files
from tiny_training import assert_same_updates


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def train_args(workdir, test_csv, heldout_csv):
  images_dir = os.path.dirname(shared_file("hierarcaps_test.csv")) + "/test_images"
  return [sys.executable, "-m", "hierre_jax.train", "--config", "tests/tiny_train_config.py",
          f"--config.workdir={workdir}", "--config.total_steps=4", "--config.log_every=2",
          f"--config.eval.test_csv={test_csv}", f"--config.eval.images_dir={images_dir}",
          f"--config.eval.heldout_csv={heldout_csv}", "--config.eval.image_batch_size=8",
          "--config.eval.text_batch_size=32"]


@pytest.mark.reordering
def test_two_processes_train_evaluate_and_export_like_one(tmp_path):
  test_csv, heldout_csv = small_eval_files(str(tmp_path))
  one, two = tmp_path / "one", tmp_path / "two"
  single = subprocess.run(train_args(one, test_csv, heldout_csv), env=python_env(2), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  port = free_port()
  procs = [subprocess.Popen(
      train_args(two, test_csv, heldout_csv) + [
          "--distributed", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
          f"--process_id={i}"],
      env=python_env(1), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  try:
    outputs = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  assert "step 4 evaluation: " in outputs[0][0]
  assert "evaluation: " not in outputs[1][0]  # process 1 computes, prints nothing
  assert "service on 127.0.0.1:" in outputs[0][1]  # the coordinator listens on loopback only

  _, want, _ = convert.load_clip(str(one / "export"))
  _, got, _ = convert.load_clip(str(two / "export"))
  _, before, _ = convert.load_clip(str(one / "random_init"))
  # The same step, its collectives across processes instead of within one: float32 reordering.
  assert_same_updates(got, want, before, tiny_train_config.get_config().lr, 4)
  rows_one, rows_two = metric_writer.read_metrics(str(one)), metric_writer.read_metrics(str(two))
  assert [r["step"] for r in rows_two] == [0, 2, 4, 4]  # eval at 0, train at 2 and 4, eval at 4
  for got_row, want_row in zip(rows_two, rows_one):
    assert got_row == pytest.approx(want_row, abs=1e-5)
  for step in (0, 4):
    a = json.loads((one / f"eval_step_{step}.json").read_text())
    b = json.loads((two / f"eval_step_{step}.json").read_text())
    assert a["num_images"] == b["num_images"] == 24
    assert (b["precision"], b["recall"], b["tau_d"]) == pytest.approx(
        (a["precision"], a["recall"], a["tau_d"]), abs=1e-6)
    assert b["heldout"] == pytest.approx(a["heldout"], abs=1e-6)

  # Evaluating the workdir: the newest verified checkpoint, results where the user says.
  evaluated = subprocess.run(
      [sys.executable, "-m", "hierre_jax.evaluate", f"--model={two}",
       f"--hierarcaps_test_csv={test_csv}",
       f"--hierarcaps_images={os.path.dirname(test_csv)}/../no_such_images"],
      env=python_env(1), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert evaluated.returncode == 1 and "images not found" in evaluated.stderr.splitlines()[-1]
  assert "orbax" not in evaluated.stderr  # no per-restore INFO lines
  evaluated = subprocess.run(
      [sys.executable, "-m", "hierre_jax.evaluate", f"--model={two}",
       f"--hierarcaps_test_csv={test_csv}",
       f"--hierarcaps_images={os.path.dirname(shared_file('hierarcaps_test.csv'))}/test_images",
       f"--output_dir={tmp_path / 'eval_out'}", "--norandom_baseline"],
      env=python_env(1), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  [result] = json.loads((tmp_path / "eval_out" / "results.json").read_text())
  assert result["checkpoint_step"] == 4
  assert result["hierarcaps/tau_d"] == pytest.approx(
      json.loads((two / "eval_step_4.json").read_text())["tau_d"], abs=1e-6)
  assert "orbax" not in evaluated.stderr
