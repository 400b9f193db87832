"""The family contract (`models.family`): registration, declared capabilities that hold, and
the test matrix covering every registered family (the toy family of tests/toy_family.py
included)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import family_matrix
from hierre_jax import models
from hierre_jax.models import family as family_lib
from hierre_jax.models import state_dicts
from runs import ROOT, python_env


def test_the_matrix_holds_every_registered_family():
  assert set(family_matrix.MATRIX) == set(models.FAMILIES)
  assert "toy" in models.FAMILIES  # registered from outside the package (HIERRE_JAX_PLUGINS)


def test_register_refuses_a_taken_name_and_an_unknown_capability():
  toy = models.FAMILIES["toy"]
  with pytest.raises(ValueError, match="a model family named 'toy' is registered already"):
    models.register(toy)
  class Unknown(type(toy)):
    name = "toy_unknown"
    capabilities = frozenset({"flies"})
  with pytest.raises(ValueError, match=r"'toy_unknown' declares unknown capabilities "
                     r"\['flies'\]; known: hf_export, stacked_layers, token_features"):
    models.register(Unknown())
  assert "toy_unknown" not in models.FAMILIES


def test_a_plugin_that_cannot_be_imported_is_named():
  env = dict(python_env(1), HIERRE_JAX_PLUGINS="toy_family,no_such_module")
  proc = subprocess.run([sys.executable, "-c", "import hierre_jax.models"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert ("HIERRE_JAX_PLUGINS=toy_family,no_such_module: module 'no_such_module' cannot be "
          "imported (No module named 'no_such_module')") in proc.stderr


def test_declared_capabilities_hold(family_dir, tmp_path):
  """What each family declares is what it does: per-token encoders, two layer layouts, a
  Hugging Face export that transformers' families read back."""
  model = models.load(family_dir)
  fam, caps = model.family, model.family.capabilities
  encoders = fam.encoders(model.config)
  has_tokens = encoders.text_tokens is not None and encoders.image_tokens is not None
  assert has_tokens == (family_lib.TOKEN_FEATURES in caps)
  _, unrolled = fam.read_checkpoint(family_dir, scan_layers=False)
  assert fam.has_stacked_layers(model.params) == (family_lib.STACKED_LAYERS in caps)
  assert not fam.has_stacked_layers(unrolled)
  if family_lib.HF_EXPORT in caps:
    out = model.export(str(tmp_path / "hf"), hf=True)
    assert models.family_of(out).architectures  # a transformers architecture
  else:
    with pytest.raises(ValueError, match=f"a {fam.name} model has no Hugging Face format"):
      model.export(str(tmp_path / "hf"), hf=True)
  assert 0 < model.max_length <= fam.max_length


def test_toy_checkpoint_refuses_wrong_arrays_naming_file_and_key(tmp_path):
  from toy_family import WEIGHTS_FILE
  d = family_matrix.MATRIX["toy"].write_tiny(str(tmp_path / "toy"), 0)
  path = os.path.join(d, WEIGHTS_FILE)
  with np.load(path) as stored:
    arrays = {k: stored[k] for k in stored.files}
  np.savez(path, **{**arrays, "text_projection": arrays["text_projection"][:3]})
  with pytest.raises(state_dicts.CheckpointFormatError,
                     match=r"toy_weights.npz: text_projection should have shape \(24, 16\) "
                     r"\(toy_config.json's sizes\); found \(3, 16\)"):
    models.load(d)
  np.savez(path, **{**arrays, "extra": np.zeros(2)})
  with pytest.raises(state_dicts.CheckpointFormatError, match=r"unexpected arrays \['extra'\]"):
    models.load(d)
  np.savez(path, **{**arrays, "logit_scale": np.float32(np.nan)})
  with pytest.raises(Exception, match=r"toy_weights.npz: 1 of 6 parameter tensors hold NaN"):
    models.load(d)


def test_toy_tokenizer_keeps_the_call_contract():
  """The calls `family.Family.load_tokenizer` documents: special tokens framing, truncation
  keeping <eos> (the pooled token), unknown words, padding with its mask."""
  import zlib
  from toy_family import BOS, EOS, HASH_BUCKETS, PAD, ToyTokenizer
  tok = ToyTokenizer(("<pad>", "<bos>", "<eos>", "a", "dog", ","))
  cat = 6 + zlib.crc32(b"cat") % HASH_BUCKETS  # a word outside the vocabulary: hashed
  assert tok(["A dog, a cat"], truncation=True, max_length=32)["input_ids"] == [
      [BOS, 3, 4, 5, 3, cat, EOS]]
  assert tok(["a dog a dog a"], truncation=True, max_length=4)["input_ids"] == [
      [BOS, 3, 4, EOS]]
  assert tok("a dog", add_special_tokens=False)["input_ids"] == [3, 4]
  padded = tok(["dog"], padding="max_length", truncation=True, max_length=5)
  assert padded == {"input_ids": [[BOS, 4, EOS, PAD, PAD]], "attention_mask": [[1, 1, 1, 0, 0]]}
  assert tok.pad_token_id == PAD
  toy = models.FAMILIES["toy"]
  assert int(toy.pool_index(None, np.array([BOS, 4, EOS, PAD]))) == 2


def test_toy_evaluator_runs_through_evaluate_with_its_column_and_count(tmp_path):
  """The toy evaluator (tests/toy_evaluator.py) on the toy family, through `evaluate`: its
  --evals name, its file flag, its column with interval and item count in results.md."""
  import json
  from absl.testing import flagsaver
  from hierre_jax import evaluate
  from hierre_jax import loading
  model = family_matrix.MATRIX["toy"].write_tiny(str(tmp_path / "toy"), 0)
  texts = ["a dog", "an animal", "a brown dog on the grass", "something"]
  (tmp_path / "texts.txt").write_text("\n".join(texts + [""]) + "\n")
  out = tmp_path / "out"
  with flagsaver.flagsaver(model=[model], evals=["meanradius"], output_dir=str(out),
                           meanradius_texts=str(tmp_path / "texts.txt"),
                           random_baseline=False):
    evaluate.FLAGS.mark_as_parsed()
    evaluate.main([])
  result, = json.load(open(out / "results.json"))
  embedder = loading.embedder(model)
  feats, root = embedder.texts(texts)
  want = np.linalg.norm(feats.astype(np.float64) - root, axis=1).mean()  # on the sphere
  assert result["meanradius/mean_radius"] == pytest.approx(want, rel=1e-6)
  lo, hi = result["meanradius/mean_radius_ci95"]
  assert lo <= want <= hi and lo < hi
  table = (out / "results.md").read_text()
  assert "| mean radius |" in table
  assert f"| {want:.3f} [{lo:.3f}, {hi:.3f}] (n=4) |" in table


def test_evaluator_options_are_declared_once_and_reach_build():
  """Options an evaluator declares (`registry.Option`) become the suite's flags and reach its
  `build`; one name declared two ways, an unknown kind or an undeclared option is refused."""
  from hierre_jax.evaluators import registry
  from hierre_jax.evaluators import suite
  options = registry.options()
  assert {"tau_d_ties", "traversal_root", "allow_missing_images", "min_images",
          "tfds_data_dir"} <= set(options)
  assert options["tau_d_ties"].kind == ("release", "tau_b")
  values = registry.option_values({"min_images": 7})
  assert values["min_images"] == 7 and values["tau_d_ties"] == "release"
  with pytest.raises(ValueError, match=r"evaluator options \['nope'\]: none declares them"):
    suite.build(["hyperlex"], {}, {"nope": 1})
  clash = registry.Entry("clash", files={}, build=None, options=(
      registry.Option("min_images", 3, "another default", "integer"),))
  with pytest.raises(ValueError, match="option 'min_images' of 'clash' differs"):
    registry.register(clash)
  odd = registry.Entry("odd", files={}, build=None,
                       options=(registry.Option("odd_option", 1.5, "a float", "float"),))
  with pytest.raises(ValueError, match="option 'odd_option' of 'odd': kind 'float'"):
    registry.register(odd)
  assert "clash" not in registry.ENTRIES and "odd" not in registry.ENTRIES
