"""The model a run starts from, where the run writes, and what a workdir keeps of the model
to read its checkpoints."""
import os

from absl import logging

from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax import models
from hierre_jax.common import sealed
from hierre_jax.common import sharding
from hierre_jax.models import family as family_lib

RANDOM_INIT = "random_init"
# The run's export, in its checkpoint's own format (a Hugging Face directory, a MERU .pth,
# open_clip's files; Hugging Face's with config.export_hf).
DEFAULT_EXPORT = "export"
LEGACY_EXPORT = "hf_export"  # the same folder in workdirs written before 2026-12-07
# The family of a config.random_init that names none (configs from before there were two).
UNNAMED_RANDOM_FAMILY = "clip"


def export_dir(config):
  """Where the run exports: config.export_dir, or workdir/export (workdir/hf_export in a
  workdir an earlier version exported to, so that it resumes and exports where it did)."""
  if config.export_dir:
    return config.export_dir
  legacy = os.path.join(config.workdir, LEGACY_EXPORT)
  return legacy if os.path.isdir(legacy) else os.path.join(config.workdir, DEFAULT_EXPORT)


def export_owner(config):
  """The owner record (`locations.claim`) of this run's export folder."""
  return {"writer": "hierre_jax export", "workdir": locations.real(config.workdir)}


def check_model_source(config):
  """One start: config.model or config.random_init, never both (one line naming both keys:
  a random model must not be trained and exported in place of the checkpoint named)."""
  if config.get("random_init") and config.get("model"):
    raise errors.ConfigError(
        f"config.model={config.model!r} and config.random_init are both set: a run starts "
        "from one; add --config.random_init=None to train that checkpoint, or leave "
        "config.model empty for a random one")


def check_locations(config, data_inputs):
  """Before anything is written: config.model or config.random_init (`check_model_source`);
  the workdir and the export folder apart from the model
  directory and `data_inputs` ((what, path) pairs), the export folder neither the workdir nor
  one of its own folders, and a config.export_dir outside it new, empty or this run's."""
  check_model_source(config)
  inputs = list(data_inputs)
  if not config.get("random_init"):
    inputs.insert(0, ("config.model", config.model))
  out = export_dir(config)
  locations.check_apart([("config.workdir", config.workdir), ("config.export_dir", out)], inputs)
  workdir = locations.real(config.workdir)
  if locations.within(workdir, locations.real(out)) or (
      locations.within(locations.real(out), workdir)
      and locations.real(out) not in (os.path.join(workdir, DEFAULT_EXPORT),
                                      os.path.join(workdir, LEGACY_EXPORT))):
    raise errors.UserError(f"config.export_dir={config.export_dir}: the workdir's own files are "
                           f"there; export outside {config.workdir} or leave it empty "
                           f"({DEFAULT_EXPORT}/ in the workdir)")
  if config.export_dir:
    locations.check_claimable(out, export_owner(config), "config.export_dir")


def export(model, params, config):
  """Writes `params` in `model`'s checkpoint format to the run's export folder (`export_dir`)
  -> its path; a config.export_dir is claimed for this run first (`locations.claim`), so
  another run's folder is never overwritten."""
  out = export_dir(config)
  if config.export_dir:
    locations.claim(out, export_owner(config), "config.export_dir")
  model.export(out, params, hf=config.get("export_hf", False))
  return out


def check_export_format(config, family):
  """Before anything is written: config.export_hf only for a family with a Hugging Face
  format (a one-line ConfigError otherwise)."""
  if config.get("export_hf") and family_lib.HF_EXPORT not in family.capabilities:
    raise errors.ConfigError(f"config.export_hf=True: a {family.name} model has no Hugging "
                             "Face format; export it in its own (export_hf=False)")


def random_init_record(config):
  """What a workdir's random checkpoint was written for: config.random_init as a dict (its
  family named)."""
  return {"family": UNNAMED_RANDOM_FAMILY, **config.random_init.to_dict()}


def random_family(config):
  """The family of config.random_init, its `options` checked against the family's
  `random_options` (one line naming the key at fault)."""
  r = config.random_init
  name = r.get("family", UNNAMED_RANDOM_FAMILY)
  if name not in models.FAMILIES:
    raise errors.UserError(f"config.random_init.family={name!r}: not a family "
                           f"({', '.join(models.FAMILIES)})")
  family = models.FAMILIES[name]
  for key in r.get("options", {}):
    if key not in family.random_options:
      raise errors.UserError(
          f"config.random_init.options.{key}: not an option of a random {name} checkpoint "
          f"({', '.join(family.random_options) or 'it takes none'})")
  return family


def write_random_init(config, out):
  """Writes the random checkpoint of config.random_init to `out` (beside it, then renamed
  over it: never half a checkpoint), sealed with its record."""
  r = config.random_init

  def write(tmp):
    random_family(config).write_random(tmp, r.text.to_dict(), r.vision.to_dict(),
                                       r.projection_dim, seed=r.seed, **r.get("options", {}))
    return random_init_record(config)

  sealed.write_folder(out, write)


def prepare_model_dir(config, is_main, allow_config_change=False):
  """The checkpoint to start from: config.model, or the random checkpoint of
  config.random_init in workdir/random_init (written by process 0; the others wait).

  A random checkpoint there is used only if its seal verifies and it was written for this
  config.random_init; written for another, it is refused naming the keys (with
  `allow_config_change`, written anew); missing its seal or damaged, it is written anew (the
  same config and seed write the same weights)."""
  if not config.get("random_init"):
    return config.model
  random_family(config)
  out = os.path.join(config.workdir, RANDOM_INIT)
  if is_main:
    try:
      stored = sealed.verify(out) if os.path.exists(out) else None
      stored = None if stored is None else {"family": UNNAMED_RANDOM_FAMILY, **stored}
    except sealed.DamagedError as e:
      logging.warning("%s; writing the random checkpoint again", str(e).splitlines()[0])
      stored = None
    wanted = random_init_record(config)
    if stored is not None and stored != wanted:
      changes = "; ".join(sealed.record_differences(stored, wanted, "random_init."))
      if not allow_config_change:
        raise errors.UserError(f"{out} was written for another config.random_init ({changes}): "
                               "use another workdir, or --allow_config_change to write the new "
                               "one there")
      logging.warning("%s: written anew for %s (--allow_config_change)", out, changes)
      stored = None
    if stored is None:
      write_random_init(config, out)
  sharding.barrier("random_init written")
  return out


def save_model_info(model, workdir):
  """The model's config, tokenizer and preprocessing files in workdir/model_info
  (`Family.save_info`), sealed (`sealed`; verified when the workdir is read,
  `loading.load`): enough to read our checkpoints."""
  info = os.path.join(workdir, "model_info")
  model.family.save_info(model.model_dir, model.config, info)
  sealed.seal(info, sorted(n for n in os.listdir(info) if n != sealed.MANIFEST))
