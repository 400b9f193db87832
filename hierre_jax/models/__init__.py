"""Model families, one sub-package each (`models/clip/`, `models/align/`), behind one interface
(`models/family.py`). A checkpoint's family is read from its config.json: `architectures`
(a Hugging Face directory, or a train workdir's `model_info/`), else `model_type`.

To add a family: a sub-package whose `FAMILY` is a `family.Family`, listed in FAMILIES.
"""
import json
import os

from hierre_jax import errors
from hierre_jax.models import align
from hierre_jax.models import clip
from hierre_jax.models import hf_io

FAMILIES = {"clip": clip.FAMILY, "align": align.FAMILY}


class UnsupportedModel(errors.UserError):
  """A checkpoint of an architecture no family implements."""


def family_of(model_dir):
  """The Family of a model directory, from its config.json; UnsupportedModel naming the
  architecture found and the ones supported."""
  path = os.path.join(model_dir, "config.json")
  errors.require_file(path, "model config (config.json)")
  try:
    with open(path, encoding="utf-8") as f:
      hf_config = json.load(f)
  except ValueError as e:
    raise UnsupportedModel(f"{path}: not valid JSON ({e})") from None
  found = list(hf_config.get("architectures") or [])
  for fam in FAMILIES.values():
    if set(found) & set(fam.architectures) or (not found and
                                                 hf_config.get("model_type") == fam.name):
      return fam
  supported = sorted(a for fam in FAMILIES.values() for a in fam.architectures)
  raise UnsupportedModel(
      f"{path}: architecture {found or hf_config.get('model_type')!r} is not supported; "
      f"hierre_jax reads {', '.join(supported)}")


def family_of_config(config):
  """The Family whose modeling `config` (a ClipConfig, ...) belongs to."""
  return FAMILIES[config.family]


def load(path_or_id, scan_layers=True):
  """-> (Family, config, params, model_dir) of a Hugging Face directory or hub id."""
  model_dir = hf_io.resolve_model_dir(path_or_id)
  fam = family_of(model_dir)
  return (fam, *fam.load(model_dir, scan_layers))
