"""Model families, one sub-package each (`models/clip/`, `models/align/`, `models/meru/`,
...), behind one interface (`models/family.py`); `load` returns a `model.Model`. A
checkpoint's family is the first registered one that owns its path (`Family.owns`): a
Hugging Face directory (or a train workdir's `model_info/`) by its config.json's
`architectures`, else `model_type`; a MERU release checkpoint by its .pth; an open_clip
checkpoint by its open_clip_config.json.

To add a family: `register` it. The built-in ones are registered below; a family defined
outside the package is registered by its own module, which HIERRE_JAX_PLUGINS imports with
hierre_jax (`hierre_jax/__init__.py`), so that the entry points know it too
(tests/toy_family.py is one).
"""
import json
import os

from hierre_jax.common import errors
from hierre_jax.models import align
from hierre_jax.models import clip
from hierre_jax.models import hf_io
from hierre_jax.models import meru
from hierre_jax.models import open_clip
from hierre_jax.models import siglip
from hierre_jax.models.model import COMPUTE_DTYPES, Model  # noqa: F401 (the package's API)

from hierre_jax.models import family as family_lib

FAMILIES = {}  # name -> Family, in the order `family_of` asks them


def register(family):
  """Makes `family` (a `family.Family`) one that `load`, `family_of`, random checkpoints
  (config.random_init.family) and every entry point know, under its `name` -> family.
  ValueError for a name taken or a capability not in `family.CAPABILITIES`."""
  if family.name in FAMILIES:
    raise ValueError(f"a model family named {family.name!r} is registered already")
  unknown = set(family.capabilities) - set(family_lib.CAPABILITIES)
  if unknown:
    raise ValueError(f"model family {family.name!r} declares unknown capabilities "
                     f"{sorted(unknown)}; known: {', '.join(family_lib.CAPABILITIES)}")
  FAMILIES[family.name] = family
  return family


for _family in (clip.FAMILY, align.FAMILY, meru.FAMILY, open_clip.FAMILY, siglip.FAMILY):
  register(_family)


class UnsupportedModel(errors.UserError):
  """A checkpoint of an architecture no family implements."""


def family_of(model_dir):
  """The Family that owns a checkpoint path; UnsupportedModel naming the architecture
  found and the ones supported."""
  path = os.path.join(model_dir, "config.json")
  if os.path.isfile(path):  # a Hugging Face directory: its JSON is checked first
    try:
      with open(path, encoding="utf-8") as f:
        hf_config = json.load(f)
    except ValueError as e:
      raise UnsupportedModel(f"{path}: not valid JSON ({e})") from None
  for fam in FAMILIES.values():
    if fam.owns(model_dir):
      return fam
  if os.path.isfile(model_dir):
    raise UnsupportedModel(f"{model_dir}: a checkpoint file of no family hierre_jax reads "
                           "(MERU's .pth, or open_clip weights with open_clip_config.json "
                           "beside them)")
  errors.require_file(path, "model config (config.json)")
  found = list(hf_config.get("architectures") or [])
  supported = sorted(a for fam in FAMILIES.values() for a in fam.architectures)
  raise UnsupportedModel(
      f"{path}: architecture {found or hf_config.get('model_type')!r} is not supported; "
      f"hierre_jax reads {', '.join(supported)}")


def load(path_or_id, scan_layers=True):
  """-> the `Model` of a checkpoint directory or hub id: its towers' parameters (an RE root
  of its own is read by `loading.load`, which evaluations use)."""
  model_dir = hf_io.resolve_model_dir(path_or_id)
  fam = family_of(model_dir)
  return Model(fam, *fam.read_checkpoint(model_dir, scan_layers), model_dir)

