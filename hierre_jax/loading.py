"""A model from any path a user passes: a checkpoint directory, a hub id, a train
workdir (its newest checkpoint that verifies), or `random:PATH` (PATH's family, sizes,
tokenizer and preprocessing with weights drawn afresh: evaluate's baseline row); and an
`embedding.Embedder` of it."""
import os

from hierre_jax import embedding
from hierre_jax import models
from hierre_jax.common import sealed
from hierre_jax.models import hf_io
from hierre_jax.models import root_file
from hierre_jax.models import state_dicts
from hierre_jax.trainer import checkpointing


RANDOM = "random:"
RANDOM_SEED = 0


def random_source(path):
  """PATH of a `random:PATH` model, else None."""
  return path[len(RANDOM):] if path.startswith(RANDOM) else None


def is_train_workdir(path):
  return (os.path.isdir(os.path.join(path, "checkpoints"))
          and os.path.isdir(os.path.join(path, "model_info")))


def check(path):
  """Before any compute: `path` is a train workdir or a checkpoint of a family this library
  reads (`models.family_of`) -> the family's name (None for a hub id, checked when it is
  loaded); a missing local path or an unsupported checkpoint raises the one-line error
  that loading it would."""
  if random_source(path) is not None:
    return check(random_source(path))
  if is_train_workdir(path):
    return models.family_of(os.path.join(path, "model_info")).name
  if not (os.path.exists(path) or hf_io.looks_local(path)):
    return None
  return models.family_of(hf_io.resolve_model_dir(path)).name


def verify(path):
  """Loads `path` whole and checks what computing with it needs -> (checkpoint step,
  geometry name, whether it has its own root): weights readable and finite, config
  accepted, tokenizer and preprocessing files present. Raises the one-line error its first
  use would; the model is not kept (several models are checked before the first is used)."""
  model = load(path)
  state_dicts.check_finite_params(model.params, model.model_dir)
  model.tokenizer, model.preprocessing  # pylint: disable=pointless-statement (fail now)
  return model.checkpoint_step, model.geometry.name, "root" in model.params


def load(path):
  """-> the `models.Model` of `path`, with its RE root in params["root"] where it has one
  (a checkpoint's params["root"], a directory's root_file.ROOT_FILE).

  Train workdirs use the newest orbax checkpoint that verifies (its step in
  `checkpoint_step`) and workdir/model_info (verified against its seal); anything else is
  a checkpoint directory or hub id (`models.load`). `random:PATH`: PATH's model with
  the family's random draws (`Family.random_params`, seed RANDOM_SEED) for its weights,
  its stored statistics (`Family.buffers`) kept, no root of its own.
  """
  if random_source(path) is not None:
    model = load(random_source(path))
    drawn = model.family.random_params(model.config, RANDOM_SEED)
    drawn.update({k: model.params[k] for k in model.family.buffers})
    return models.Model(model.family, model.config, drawn, model.model_dir)
  if not is_train_workdir(path):
    model = models.load(path)
    root = root_file.read_root(model.model_dir, model.embedding_size)
    return model if root is None else model.with_params({**model.params, "root": root})
  ckpts = checkpointing.RunCheckpoints(os.path.join(path, "checkpoints"), read_only=True)
  params, step = ckpts.restore_latest_params()
  ckpts.close()
  if step is None:
    raise FileNotFoundError(f"{path}/checkpoints: no finished checkpoint")
  state_dicts.check_finite_params(params, f"{path}/checkpoints/{step}")
  info = os.path.join(path, "model_info")
  if os.path.exists(os.path.join(info, sealed.MANIFEST)):  # workdirs since 2026-12-03
    sealed.verify(info)
  family = models.family_of(info)
  config = family.read_config(info, family.has_stacked_layers(params))
  return models.Model(family, config, params, info, step)


def embedder(path, image_features_dir=None, mesh=None, **options):
  """An `embedding.Embedder` of `load(path)` with `embedding.EmbedOptions(**options)`. Image
  features are kept on disk in `image_features_dir` (None: a train workdir's own store, whose
  frozen image tower its training and evaluations already embedded; "": in memory only)."""
  options = embedding.EmbedOptions(**options)
  model = load(path)
  if image_features_dir is None:
    image_features_dir = (os.path.join(path, embedding.IMAGE_FEATURES) if is_train_workdir(path)
                          else "")
  store = (embedding.open_image_store(image_features_dir, model, options.compute_dtype)
           if image_features_dir else None)
  return embedding.Embedder(model, options, mesh, store)
