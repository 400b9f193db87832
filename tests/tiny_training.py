"""Tiny train configs of each trainer, and the RE train step run directly on a mesh of
devices (with deliberately wrong inputs where a test asks), with the comparisons of two
runs' losses and updates."""
import jax
import numpy as np

import family_matrix
import tiny_train_config
import tolerances
import wrong_inputs
from hierre_jax import embedding
from hierre_jax import models
from hierre_jax.radial import train_step
from hierre_jax.trainer import loop
from hierre_jax.trainer import model_dir as model_dir_lib

def tiny_config(workdir, family="clip", **overrides):
  config = tiny_train_config.get_config(family)
  config.workdir = str(workdir)
  config.update(overrides)
  return config


def count_embedded_images(monkeypatch):
  """-> a list that every image `embedding.embed_images` embeds from now on adds 1 to."""
  embedded, embed_images = [], embedding.embed_images
  def counted(model, params, batches, *args):
    return embed_images(model, params, (embedded.extend([1] * len(b)) or b for b in batches),
                        *args)
  monkeypatch.setattr(embedding, "embed_images", counted)
  return embedded


def run_steps(config, model_dir, devices, num_steps, perturb=0.0, same_batch=False,
              edit_batch=None, edit_tables=None):
  """Runs the jitted train step on a mesh of `devices` -> (losses, initial params, final
  params, pull-back losses). `perturb` > 0 starts training from the checkpoint plus that much
  noise, so the pull-back term starts away from its minimum; `same_batch`: every step on
  the batch of step 0. `edit_batch(texts) -> texts` and `edit_tables(tables) -> tables`
  change the step's inputs (the deliberately wrong variants of `wrong_inputs`)."""
  from hierre_jax.data import hierarcaps_csv
  from hierre_jax.radial import train_batches
  from hierre_jax.common import sharding
  model = models.load(model_dir)
  batches = train_batches.TrainBatches(
      hierarcaps_csv.read_hierarchies(config.train_csv), model.tokenizer, 8, 0,
      model.pool_index, model.max_length, length_groups=config.length_groups)
  mesh = sharding.make_mesh(devices)
  tx = loop.make_optimizer(config, num_steps, train_step.trained_groups(config, model.family))
  tables = train_step.step_tables(config, model, batches, mesh, range(num_steps))
  if edit_tables:
    tables = edit_tables(tables)
  root = train_step.initial_root(config, model, batches, mesh)
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda x: x + perturb * rng.normal(size=x.shape).astype(x.dtype),
                        model.params)
  if root is not None:
    params["root"] = root
  state, state_sharding = loop.create_train_state(jax.tree.map(np.array, params), tx, mesh)
  step = train_step.make_train_step(model, config, tx, mesh, state_sharding)
  losses, pullback_losses = [], []
  for s in range(num_steps):
    batch = train_step.host_batch(config, batches, 0 if same_batch else s, len(devices))
    if edit_batch:
      batch = (edit_batch(batch[0]),) + tuple(batch[1:])
    state, metrics = step(state, tables, sharding.put_global_batch(batch, mesh))
    losses.append(float(metrics["loss"]))
    pullback_losses.append(float(metrics.get("loss_pullback", 0.0)))
  kernel = max(jax.tree.leaves({k: state.params[k] for k in model.family.text_groups}),
               key=lambda x: x.size)
  assert len(kernel.sharding.device_set) == len(devices)
  return losses, params, jax.device_get(state.params), pullback_losses


def assert_same_updates(got, want, before, lr, steps):
  """Two runs of `steps` Adam steps of rate `lr` from `before` made the same updates.

  Adam divides each gradient by its own running size, so a parameter whose gradient is
  near its float32 roundoff (a key bias, to which softmax is blind; a rare token's
  embedding) may step differently by up to lr a step: no parameter may differ by more than
  that bound, and the updates as a whole (key biases apart) must agree to 1% of their size.
  """
  diff, size = [], []
  def compare(path, a, b, initial):
    name = jax.tree_util.keystr(path)
    assert np.abs(a - b).max() <= 2 * steps * lr, name
    if not (("k_proj" in name or "['key']" in name) and "bias" in name):
      diff.append(np.sum((a - b).astype(np.float64) ** 2))
      size.append(np.sum((b - initial).astype(np.float64) ** 2))
  jax.tree_util.tree_map_with_path(compare, got, want, before)
  assert np.sqrt(sum(diff)) <= 1e-2 * np.sqrt(sum(size)), (np.sqrt(sum(diff)), np.sqrt(sum(size)))


def tiny_model(config, out_dir):
  """The random checkpoint of config.random_init in out_dir, as a run writes it
  (`trainer.model_dir.write_random_init`: its family's writer, sealed)."""
  model_dir_lib.write_random_init(config, out_dir)
  return out_dir


def step_terms(config):
  """Roundings along the RE step's loss: the text tower of config.random_init (its family's
  `family_matrix.Entry.tower_terms`), then the mean over the batch's 8 texts a row."""
  entry = family_matrix.MATRIX[config.random_init.family]
  return entry.tower_terms(config.random_init.to_dict()) + 8 * config.batch_size


def assert_packed_step_equals(config, model_dir, padded):
  """The packed step (config.pack_texts) gives the losses and updates of `padded` (a
  `run_steps` result of 2 steps), and each of `wrong_inputs.PACKED` misses by far."""
  packed = run_steps(config, model_dir, jax.devices()[:1], 2)
  # Packed rows sum each text's attention and the batch in another order than padded ones.
  atol = tolerances.assert_reordered_close(packed[0], padded[0], step_terms(config))
  assert_same_updates(packed[2], padded[2], padded[1], config.lr, 2)
  for wrong in wrong_inputs.PACKED:
    losses = run_steps(config, model_dir, jax.devices()[:1], 2, edit_batch=wrong)[0]
    tolerances.assert_far(losses, padded[0], atol, wrong.__doc__)
  return packed


def step_rows(model_dir, data, step=0):
  """The training rows of `step` (batch 8, seed 0), as the train step draws them."""
  from hierre_jax.radial import train_batches
  model = models.load(model_dir)
  return train_batches.TrainBatches(data, model.tokenizer, 8, 0, model.pool_index,
                                    model.max_length).row_indices(step)


def dcsm_config(model_dir, data_dir, workdir, steps):
  from configs.dcsm import base
  config = base.get_config()
  config.model, config.data_dir, config.workdir = model_dir, data_dir, str(workdir)
  config.batch_size, config.total_steps = 4, steps
  config.log_every, config.checkpoint_every = 2, 4
  config.feature_batch_size = 8
  config.eval.benchmarks = ("procedural_spatial", "procedural_negation")
  config.eval.data_dir = data_dir
  return config
