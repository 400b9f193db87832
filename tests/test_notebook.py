"""The Colab notebook, executed as shipped on a CPU: its `parameters` cell is followed by an
injected cell with local stand-ins (a tiny random CLIP, a few HierarCaps rows)."""
import gzip
import json
import os
import shutil

import pytest

from conftest import shared_file
from family_matrix import TINY_TEXT, TINY_VISION
from hierre_jax.models.clip import random_init
from runs import ROOT, small_eval_files

NOTEBOOK = os.path.join(ROOT, "notebooks", "colab_tpu_quickstart.ipynb")


def test_notebook_runs_with_local_stand_ins(tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  data_dir = tmp_path / "hierarcaps"
  data_dir.mkdir()
  test_csv, heldout_csv = small_eval_files(str(data_dir), num_rows=16)
  shutil.move(test_csv, data_dir / "hierarcaps_test.csv")
  with open(heldout_csv, "rb") as src, gzip.open(data_dir / "hierarcaps_test_expanded.csv.gz",
                                                  "wb") as dst:
    shutil.copyfileobj(src, dst)
  os.symlink(os.path.dirname(shared_file("hierarcaps_test.csv")) + "/test_images",
             data_dir / "test_images")
  model = random_init.write_random_clip(str(tmp_path / "model"), TINY_TEXT, TINY_VISION, 16)
  workdir = tmp_path / "persistent" / "run"
  parameters = dict(
      PACKAGE=ROOT, MODEL=model, DATA_DIR=str(data_dir), WORKDIR=str(workdir), INSTALL=False,
      TRAIN_CSV=os.path.join(ROOT, "hierre_jax", "assets", "hierarcaps_sample.csv"),
      OVERRIDES={"total_steps": 2, "log_every": 1, "checkpoint_every": 2, "length_multiple": 8,
                 "compilation_cache_dir": "", "eval.image_batch_size": 8,
                 "eval.text_batch_size": 64})

  nb = nbformat.read(NOTEBOOK, as_version=4)
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1
  injected = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
  nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(injected))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()

  summary = json.loads((workdir / "train_summary.json").read_text())
  assert summary["steps"] == 2 and os.path.exists(workdir / "export" / "model.safetensors")
  outputs = "".join(o.get("text", "") + json.dumps(o.get("data", {}))
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "ext(animal, dog)" in outputs and "image/png" in outputs and "tau_d" in outputs
  assert "triplet agreement" in outputs and (workdir / "dendrogram.png").exists()


def test_comparison_notebook_runs_on_tiny_models(tmp_path, monkeypatch):
  """notebooks/compare_models.ipynb as shipped, on two tiny random models of two families and
  16 real HierarCaps rows: one table with baselines, intervals and the paired difference,
  and the picture."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  from conftest import write_tiny_model
  test_csv, _ = small_eval_files(str(tmp_path), num_rows=16)
  models = [write_tiny_model("clip", str(tmp_path / "clip")),
            write_tiny_model("siglip", str(tmp_path / "siglip"))]
  out = tmp_path / "compare"
  parameters = dict(
      PACKAGE=ROOT, MODELS=models, HIERARCAPS_TEST_CSV=test_csv,
      HIERARCAPS_IMAGES=os.path.dirname(shared_file("hierarcaps_test.csv")) + "/test_images",
      HYPERLEX=os.path.join(os.path.dirname(os.path.dirname(shared_file(
          "hierarcaps_test.csv"))), "hyperlex", "hyperlex-all.txt"),
      REFERENCES=["clip_b32"], OUTPUT_DIR=str(out), INSTALL=False)
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "compare_models.ipynb"), as_version=4)
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1
  nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
      "\n".join(f"{k} = {v!r}" for k, v in parameters.items())))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  results = json.loads((out / "results.json").read_text())
  assert [r["family"] for r in results] == ["clip", "siglip"]
  assert results[1]["paired_differences"]["to"] == models[0]
  md = (out / "results.md").read_text()
  assert "| baseline: token count (clip tokenizer) |" in md
  assert "| baseline: token count (siglip tokenizer) |" in md and "## Paired differences" in md
  outputs = "".join(o.get("text", "") + json.dumps(o.get("data", {}))
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "image/png" in outputs and f"minus {models[0]}: tau_d" in outputs
  assert "beyond length:" in outputs
