"""Shared fixtures: small random checkpoints of each model family of the test matrix
(`family_matrix.py`), saved to temp dirs (`family_dir` runs a test once per family)."""
import atexit
import os
import shutil
import tempfile

# The toy family and evaluator (tests/toy_family.py, tests/toy_evaluator.py) are registered
# wherever hierre_jax is imported: here and in the entry points the tests run as
# subprocesses (they inherit the environment).
_TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["HIERRE_JAX_PLUGINS"] = "toy_family,toy_evaluator"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_TESTS] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# One XLA compilation cache for the session, in a new temp folder (never the user's): the
# programs that take over a second to compile are compiled once, in this process and in the
# entry points the tests run as subprocesses (they inherit the environment). Set before JAX
# is imported.
_XLA_CACHE = tempfile.mkdtemp(prefix="hierre_jax_tests_xla_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE

import jax  # noqa: E402 (after the cache's environment)
import numpy as np
import pytest

import family_matrix
import tolerances
from family_matrix import ALIGN_TINY_TEXT, TINY_TEXT

# Parity is asserted at true fp32: on GPU/TPU the default would allow TF32 / bf16 passes.
jax.config.update("jax_default_matmul_precision", "highest")

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "hierarcaps")
SHARED_NLTK_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "nltk_data")
if os.path.isdir(SHARED_NLTK_DATA):  # WordNet offline (read when nltk is first imported)
  os.environ.setdefault("NLTK_DATA", os.path.abspath(SHARED_NLTK_DATA))

# Roundings along the longer tiny text tower (`tolerances.tower_terms`): the reordering
# tolerance of tests that compare two batchings of the tiny models' texts.
TINY_TOWER_TERMS = max(
    tolerances.tower_terms(t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"],
                           t["max_position_embeddings"], 40) for t in (TINY_TEXT, ALIGN_TINY_TEXT))


# Every model family the tests cover (`family_matrix.MATRIX`), and those the kill-and-resume
# tests train.
FAMILIES = family_matrix.FAMILIES
RESUME_FAMILIES = family_matrix.RESUME_FAMILIES


def write_tiny_model(family, out_dir, seed=0):
  """A tiny random checkpoint of `family` (one of FAMILIES) in out_dir -> out_dir."""
  return family_matrix.MATRIX[family].write_tiny(out_dir, seed)


@pytest.fixture(scope="session", params=FAMILIES)
def family_dir(request, tmp_path_factory):
  """A tiny random checkpoint of each model family in turn (the family: models.family_of)."""
  return write_tiny_model(request.param, str(tmp_path_factory.mktemp(request.param)), seed=3)


def save_torch_clip(out_dir, text, vision, projection_dim, seed=0):
  """A random `transformers.CLIPModel` (torch), saved with save_pretrained + tokenizer files."""
  torch = pytest.importorskip("torch")
  import transformers
  from hierre_jax.models.clip import tokenizer
  torch.manual_seed(seed)
  config = transformers.CLIPConfig(text_config=text, vision_config=vision,
                                   projection_dim=projection_dim)
  model = transformers.CLIPModel(config).eval()
  # Non-trivial LayerNorm and bias values, so that a mis-mapped parameter shows.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "layer_norm" in name or "layrnorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(out_dir)
  tokenizer.write_clip_vocab(out_dir)
  return model


def save_torch_siglip(out_dir, text, vision, seed=0):
  """A random `transformers.SiglipModel` (torch; LayerNorms and biases perturbed), saved
  with a SentencePiece vocabulary trained here (`tokenizer.train_spiece`)."""
  torch = pytest.importorskip("torch")
  import transformers
  from hierre_jax.models.siglip import random_init, tokenizer
  torch.manual_seed(seed)
  config = random_init.hf_config(dict(text, projection_size=vision["hidden_size"]), vision)
  model = transformers.SiglipModel(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(out_dir)
  tokenizer.train_spiece(random_init.english_words(), out_dir, text["vocab_size"])
  return model


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
  """Directory of a tiny random HF CLIPModel (OpenAI-style legacy eos id, quick_gelu)."""
  return write_tiny_model("clip", str(tmp_path_factory.mktemp("tiny_clip")))


@pytest.fixture(scope="session")
def tok(tmp_path_factory):
  """The OpenAI CLIP tokenizer (its vocabulary written from the bundled BPE merges)."""
  from hierre_jax.models.clip import tokenizer
  d = str(tmp_path_factory.mktemp("tok"))
  tokenizer.write_clip_vocab(d)
  return tokenizer.load_tokenizer(d)


def clip_batches(data, tok, batch_size, seed, **options):
  """`TrainBatches` of CLIP texts (pooled at the end-of-text token, 77 tokens)."""
  from hierre_jax.models.clip import modeling
  from hierre_jax.radial import train_batches
  return train_batches.TrainBatches(
      data, tok, batch_size, seed,
      lambda ids: modeling.end_of_text_position(ids, tok.eos_token_id), 77, **options)


class XdistWorkers:
  """pytest-xdist's `-n auto`: one test process per CPU core, at most 4 (each builds its own
  tiny models and compiles its own programs)."""

  @staticmethod
  def pytest_xdist_auto_num_workers(config):
    del config
    return max(1, min(4, os.cpu_count() or 1))


def pytest_configure(config):
  if config.pluginmanager.hasplugin("xdist"):  # (the hook is xdist's: unknown without it)
    config.pluginmanager.register(XdistWorkers())


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def shared_file(name):
  path = os.path.join(SHARED, name)
  if not os.path.exists(path):
    pytest.skip(f"{path} not present")
  return path
