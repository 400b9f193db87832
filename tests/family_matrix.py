"""The test matrix of model families: every registered family (`models.FAMILIES`, the toy
family of tests/toy_family.py included), its tiny checkpoint and tiny training sizes, and
what its towers are checked against. Tests run once per family through conftest's
`family_dir` (or `RESUME_FAMILIES`) and skip what a family does not declare
(`needs`): a capability (`family.CAPABILITIES`), a geometry, a reference; never a name.

A new family is one more entry here (test_the_matrix_holds_every_registered_family fails
until it is).
"""
import dataclasses
from typing import Callable

import pytest

import tolerances
from hierre_jax import models
from hierre_jax.models.align import random_init as align_random_init
from hierre_jax.models.meru import random_init as meru_random_init
from hierre_jax.models.open_clip import checkpoint as open_clip_checkpoint

# Reference kinds: what a family's towers are compared with.
TRANSFORMERS = "transformers"  # transformers' PyTorch model of the checkpoint (or its export)
TWIN = "pytorch twin"  # a PyTorch twin written from the spec (MERU: tests/test_meru.py)
SLOW = "slow"  # only the obviously-correct slow references (tests/references.py)


@dataclasses.dataclass(frozen=True)
class Entry:
  write_tiny: Callable  # (out_dir, seed) -> out_dir holding a tiny random checkpoint
  random_init: dict  # config.random_init of tests/tiny_train_config.py:<family>
  reference: str  # TRANSFORMERS, TWIN or SLOW
  resume: bool  # in the kill-and-resume tests (`RESUME_FAMILIES`)
  weights_file: str = "model.safetensors"  # the file an export writes the tensors to
  published_rows: str = "clip_b32"  # the paper's rows beside its results (`published.SUITE`)
  geometry: str = "sphere"  # the space of its tiny checkpoints' features (`Family.geometry`)
  # Where the text tower's layers are stacked (STACKED_LAYERS; `state_dicts.stack_layers`)
  text_layers: tuple = ("text_model", "encoder", "layers")
  # Roundings along the text tower of a random_init of this family (`tolerances`): a
  # transformer's `tower_terms` by default
  text_terms: Callable = None

  def tower_terms(self, random_init):
    """Roundings along the text tower of `random_init` (a dict like `self.random_init`)."""
    if self.text_terms is not None:
      return self.text_terms(random_init)
    t = random_init["text"]
    return tolerances.tower_terms(t["hidden_size"], t["intermediate_size"],
                                  t["num_hidden_layers"], t["max_position_embeddings"],
                                  random_init["projection_dim"])


# The tiny checkpoints' sizes (Hugging Face config keys).
_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TINY_TEXT = dict(_TOWER, max_position_embeddings=77)
TINY_VISION = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, image_size=32, patch_size=8)
# ALIGN: a 2-layer BERT (an intermediate size unlike the hidden one, so that a transposed
# kernel shows) and the EfficientNet of ALIGN_SPEC section 6 (every block kind), 45 px.
ALIGN_TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=37, max_position_embeddings=64)
# SigLIP: text length 16 (as so400m-patch14-224; the base length 64 in tests/test_siglip.py),
# text features projected by the head to the vision width.
SIGLIP_TINY_TEXT = dict(TINY_TEXT, max_position_embeddings=16, vocab_size=500)
# The image tower of the tiny training configs (fewer patches than TINY_VISION's).
TRAIN_VISION = dict(_TOWER, image_size=32, patch_size=16)


def _clip(out_dir, seed):
  from conftest import save_torch_clip
  # OpenAI-style legacy eos id, quick_gelu, non-trivial LayerNorms
  save_torch_clip(out_dir, dict(TINY_TEXT, eos_token_id=2), TINY_VISION, 16, seed=seed)
  return out_dir


def _siglip(out_dir, seed):
  from conftest import save_torch_siglip
  save_torch_siglip(out_dir, SIGLIP_TINY_TEXT, TINY_VISION, seed=seed)
  return out_dir


def _open_clip(out_dir, seed):  # exact GELU (the LAION-2B runs'), open_clip's own layout
  return models.FAMILIES["open_clip"].write_random(
      out_dir, dict(TINY_TEXT, hidden_act="gelu"), dict(TINY_VISION, hidden_act="gelu"), 16,
      seed=seed)


def _align(out_dir, seed):
  return align_random_init.write_random_align(out_dir, ALIGN_TINY_TEXT,
                                              align_random_init.TINY_VISION, 40, seed=seed)


def _meru(out_dir, seed):
  return meru_random_init.write_random_meru(out_dir, meru_random_init.TINY_TEXT,
                                            meru_random_init.TINY_VISION, 64, seed=seed)


def _toy(out_dir, seed):
  return models.FAMILIES["toy"].write_random(out_dir, TOY_TEXT, TOY_VISION, 16, seed=seed)


TOY_TEXT = dict(hidden_size=24, max_position_embeddings=32)
TOY_VISION = dict(image_size=32, patch_size=8)

MATRIX = {
    "clip": Entry(_clip, dict(
        family="clip", text=TINY_TEXT, vision=TRAIN_VISION, projection_dim=16), TRANSFORMERS,
        resume=True),
    "align": Entry(_align, dict(
        family="align", text=ALIGN_TINY_TEXT, vision=align_random_init.TINY_VISION,
        projection_dim=40), TRANSFORMERS, resume=True,
        text_layers=("text_model", "encoder", "layer"), published_rows="align"),
    "siglip": Entry(_siglip, dict(
        family="siglip", text=SIGLIP_TINY_TEXT, vision=TRAIN_VISION, projection_dim=32),
        TRANSFORMERS,
        resume=False),  # its train step: tests/test_siglip.py
    "open_clip": Entry(_open_clip, dict(  # checked through its Hugging Face export
        family="open_clip", text=dict(TINY_TEXT, hidden_act="gelu"),
        vision=dict(TRAIN_VISION, hidden_act="gelu"), projection_dim=16),
        TRANSFORMERS, resume=False,  # CLIP's towers and train step
        weights_file=open_clip_checkpoint.SAFETENSORS),
    "meru": Entry(_meru, dict(
        family="meru", text=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=256,
                                 max_position_embeddings=77),
        vision=dict(hidden_size=64, num_hidden_layers=2, image_size=32, patch_size=16),
        projection_dim=16), TWIN, resume=True, weights_file=meru_random_init.FILE,
        text_layers=("textual", "encoder", "layers"), published_rows="meru", geometry="lorentz"),
    "toy": Entry(_toy, dict(family="toy", text=TOY_TEXT, vision=TOY_VISION, projection_dim=16),
                 SLOW, resume=True, weights_file="toy_weights.npz", text_layers=None,
                 # the bag's mean over tokens, then the projection
                 text_terms=lambda r: r["text"]["max_position_embeddings"]
                 + r["text"]["hidden_size"]),
}
FAMILIES = tuple(MATRIX)
RESUME_FAMILIES = tuple(name for name, e in MATRIX.items() if e.resume)


def needs_sphere(family):
  """Skips a test whose reference is defined on the sphere for a family whose tiny
  checkpoints live elsewhere (MERU's own: tests/test_meru.py)."""
  if MATRIX[family].geometry != "sphere":
    pytest.skip(f"the test's reference is defined on the sphere; {family}'s tiny models live "
                f"in {MATRIX[family].geometry} space")


def needs(model, capability=None, geometry=None, reference=None):
  """Skips the test unless `model` (a models.Model) declares `capability`, lives in
  `geometry` (a geometry name) and is checked against `reference`."""
  name = model.family.name
  if capability is not None and capability not in model.family.capabilities:
    pytest.skip(f"the {name} family declares no {capability}")
  if geometry is not None and model.geometry.name != geometry:
    pytest.skip(f"a {model.geometry.name} model; the test's reference is for {geometry}")
  if reference is not None and MATRIX[name].reference != reference:
    pytest.skip(f"the {name} family is checked against {MATRIX[name].reference}")
