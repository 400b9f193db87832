"""The ablation grids: each row's config changes only what the row says, and a grid killed
mid-way resumes without retraining its finished variants."""
import json
import os
import subprocess
import sys

import pytest

from hierre_jax import ablations
from hierre_jax.evaluators import published
from runs import ROOT, SHARED_ROOT, kill_at_first_checkpoint, python_env, run_python

CONFIG_DIR = os.path.join(ROOT, "configs", "ablations")

# What each row of Tables 3 and 5 changes in configs/clip_b32.py (SPEC section 6).
EXPECTED_CHANGES = {
    "method": {},
    "root_mean": {"root": "mean"},
    "root_origin": {"root": "origin"},
    "root_pretrained": {"root": "pretrained"},
    "root_only": {"root": "pretrained", "trainable": "root"},
    "no_pullback": {"lambda_p": 0.0},
    "three_tiers": {"tiers": [0, 2, 3]},
    "no_negatives": {"negatives": False},
    "clip_objective": {"loss": "contrastive"},
    "ec_margin_1": {"loss": "ec", "ec_margin": 0.05},
    "ec_margin_2": {"loss": "ec", "ec_margin": 0.2},
    "ec_margin_3": {"loss": "ec", "ec_margin": 0.8},
    "ec_margin_4": {"loss": "ec", "ec_margin": 3.2},
}


def config_of(variant, scale):
  return ablations.load_module(os.path.join(CONFIG_DIR, variant + ".py")).get_config(scale)


@pytest.mark.parametrize("variant", sorted(set(ablations.TABLE3 + ablations.TABLE5)))
def test_each_row_changes_only_what_it_says(variant):
  base = config_of("method", "full")
  changes = ablations.changes(config_of(variant, "full"), base)
  if variant == "from_scratch":  # a random CLIP-B-shaped model instead of the checkpoint
    assert changes["lambda_p"] == 0.0 and changes["model"] == ""
    assert changes["random_init.text.num_hidden_layers"] == 12
    assert changes["random_init.vision.patch_size"] == 32
    assert set(changes) - {"lambda_p", "model"} <= {k for k in changes
                                                   if k.startswith("random_init.")}
  else:
    assert changes == EXPECTED_CHANGES[variant]
  assert set(published.ABLATIONS[variant]) >= {"hierarcaps/precision", "hierarcaps/tau_d"}


def test_cpu_grids_hold_every_row_that_makes_sense_from_scratch():
  cpu = set(ablations.GRIDS["table3_cpu"][1]) | set(ablations.GRIDS["table5_cpu"][1])
  for variant in set(ablations.TABLE3 + ablations.TABLE5):
    if variant in cpu:
      config = config_of(variant, "cpu")
      assert config.random_init.text.hidden_size == 256 and config.lambda_p == 0.0
      assert ablations.changes(config, config_of("method", "cpu")) == EXPECTED_CHANGES[variant]
    else:  # the row says why it has no twin
      with pytest.raises(ValueError, match=f"ablation {variant} has no CPU-scale twin: .+"):
        config_of(variant, "cpu")


def grid_command(workdir):
  return ["-m", "hierre_jax.ablations", "--grid=table3_cpu", f"--workdir={workdir}",
          "--base_config=tests/tiny_train_config.py", "--variants=method,root_origin",
          "--evals=hyperlex", f"--data_dir={SHARED_ROOT}", "--override=total_steps=300",
          "--override=checkpoint_every=20", "--override=log_every=100"]


def test_killed_grid_resumes_without_retraining_finished_variants(tmp_path):
  if not os.path.exists(os.path.join(SHARED_ROOT, "hyperlex", "hyperlex-all.txt")):
    pytest.skip("HyperLex not in ../shared")
  proc = subprocess.Popen([sys.executable] + grid_command(tmp_path), cwd=ROOT,
                          env=python_env(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  kill_at_first_checkpoint(proc, tmp_path / "root_origin" / "checkpoints")
  first = tmp_path / "method"
  finished = {name: (first / name).read_bytes()
              for name in ("train_summary.json", "metrics.jsonl", "ablation_eval.json")}
  assert not (tmp_path / "table.json").exists()
  resumed = run_python(grid_command(tmp_path), devices=1)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "[1/2] table3_cpu method: trained" in resumed.stdout
  assert "[2/2] table3_cpu root_origin: training" in resumed.stdout
  for name, content in finished.items():
    assert (first / name).read_bytes() == content, name  # not retrained nor re-evaluated
  summary = json.loads((tmp_path / "root_origin" / "train_summary.json").read_text())
  assert 0 < summary["resumed_from"] < 300
  table = json.loads((tmp_path / "table.json").read_text())
  assert [(r["variant"], r["changes"]) for r in table["rows"]] == [
      ("method", {}), ("root_origin", {"root": "origin"})]
  assert all(r["hyperlex/num_pairs"] == 2616 for r in table["rows"])
  markdown = (tmp_path / "table.md").read_text()
  # Only the evaluated benchmark's columns, the paper's numbers of them beside ours.
  assert "| model | HyperLex rho_all | rho_nouns |\n" in markdown
  assert "| root_origin |" in markdown and "| paper: root_origin | 0.230 | 0.230 |\n" in markdown
  assert "[2/2] table3_cpu root_origin: evaluated at step " in resumed.stdout
  # Run again once finished: nothing is trained or evaluated.
  again = run_python(grid_command(tmp_path), devices=1)
  assert "[2/2] table3_cpu root_origin: trained" in again.stdout
  assert json.loads((tmp_path / "table.json").read_text())["rows"] == table["rows"]


def test_grid_checks_every_variant_before_training_any(tmp_path):
  out = run_python(["-m", "hierre_jax.ablations", "--grid=table3", f"--workdir={tmp_path}",
                    "--base_config=tests/tiny_train_config.py", "--variants=method,clip_objective",
                    "--evals=hyperlex", f"--data_dir={SHARED_ROOT}"], devices=1)
  assert out.returncode == 1
  assert "error: config.loss='contrastive' needs config.train_images_dir" in out.stderr
  assert not (tmp_path / "method").exists()
