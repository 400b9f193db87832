"""Training the DCSM scorer on a frozen model (DCSM_SPEC section 6), on the generic loop.

  python -m hierre_jax.dcsm train --config configs/dcsm/base.py --config.data_dir=DATA

Per step, for each of the three paired datasets (spatial, binding, negation) and each of
the two caption versions, a block of 2B images (B anchors, then their B opposites) and 2B
captions (the same order), image and text axes shuffled independently; the CNN scores the
(2B, 2B) maps, z-scored over the whole block; the loss is CE(S, Y) + CE(S^T, Y^T) without a
temperature, Y the matching pairs; the six blocks' gradients are summed and divided by 3
(`loss` is that sum / 3), one Adam step. The frozen model's token features of every
caption, and of every image when config.augment is off, are computed once, before the
first step; with it on, each step's images are augmented as the release does and embedded
in the step.
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from hierre_jax.common import config_values
from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax.common import sharding
from hierre_jax.data import images as image_data
from hierre_jax.dcsm import augment
from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import checkpoint
from hierre_jax.dcsm import evaluate
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import procedural
from hierre_jax.dcsm import scorer as scorer_lib
from hierre_jax.dcsm import scoring
from hierre_jax.evaluators import multiple_choice
from hierre_jax.trainer import loop
from hierre_jax.trainer import run

DATASETS = procedural.DATASETS
VERSIONS = procedural.VERSIONS


class Blocks:
  """Index tables of the training pairs and the blocks of each step: an epoch is one
  shuffled pass over each set's pairs (a permutation drawn from (seed, epoch, set); a step
  takes the next B of them, and a set larger than steps_per_epoch x B leaves a different
  tail out each epoch), the blocks' axes shuffled from (seed, step): the same step gets
  the same blocks in a resumed run."""

  def __init__(self, pairs, batch_size, seed):
    self.batch_size, self.seed = batch_size, seed
    self.images = sorted({p for ps in pairs.values() for pair in ps
                          for p in (pair.image, pair.opposite)})
    self.captions = sorted({c for ps in pairs.values() for pair in ps
                            for version in pair.captions for c in version})
    image_index = {p: i for i, p in enumerate(self.images)}
    caption_index = {c: i for i, c in enumerate(self.captions)}
    self.tables = {}  # dataset -> ([n, 2] image ids, [VERSIONS, n, 2] caption ids)
    for name in DATASETS:
      if len(pairs[name]) < batch_size:
        raise errors.UserError(f"the {name} training set has {len(pairs[name])} pairs, fewer "
                               f"than config.batch_size={batch_size}")
      self.tables[name] = (
          np.asarray([[image_index[p.image], image_index[p.opposite]] for p in pairs[name]]),
          np.asarray([[[caption_index[c] for c in p.captions[v]] for p in pairs[name]]
                      for v in range(VERSIONS)]))
    self.steps_per_epoch = min(len(pairs[n]) for n in DATASETS) // batch_size

  def at(self, step):
    """-> {images, captions: [2B, 6] ids, image_slots, caption_slots: [2B, 6] pair slots}:
    block j (dataset j // 2, version j % 2) in column j; slot s < B is anchor s, B + s its
    opposite; the rows are the shuffled axes."""
    rng = np.random.default_rng([self.seed, step])
    b = self.batch_size
    epoch, position = divmod(int(step), self.steps_per_epoch)
    out = {k: [] for k in ("images", "captions", "image_slots", "caption_slots")}
    for d, name in enumerate(DATASETS):
      image_ids, caption_ids = self.tables[name]
      order = np.random.default_rng([self.seed, epoch, d]).permutation(len(image_ids))
      chosen = order[position * b:(position + 1) * b]
      for v in range(VERSIONS):
        slots_i, slots_c = rng.permutation(2 * b), rng.permutation(2 * b)
        images = np.concatenate([image_ids[chosen, 0], image_ids[chosen, 1]])
        captions = np.concatenate([caption_ids[v, chosen, 0], caption_ids[v, chosen, 1]])
        out["images"].append(images[slots_i])
        out["captions"].append(captions[slots_c])
        out["image_slots"].append(slots_i)
        out["caption_slots"].append(slots_c)
    return {k: np.stack(v, axis=1).astype(np.int32) for k, v in out.items()}


class AugmentedBatches:
  """`Blocks.at` plus each block image augmented (`augment.augment`, drawn from (seed, step,
  slot): a resumed run sees the same images) and preprocessed: "pixels" [2B, 6, H, W, C]."""

  def __init__(self, blocks, preprocessing, seed):
    self.blocks, self.preprocessing, self.seed = blocks, preprocessing, seed
    self.decoded = {}  # image id -> RGB PIL image, decoded once

  def image(self, i):
    if i not in self.decoded:
      self.decoded[i] = image_data.open_rgb(self.blocks.images[i])
    return self.decoded[i]

  def __call__(self, step):
    batch = self.blocks.at(step)
    ids = batch["images"]
    rngs = np.random.default_rng([self.seed, step, 1]).spawn(ids.size)
    pixels = [self.preprocessing.preprocess(augment.augment(self.image(i), rng))
              for i, rng in zip(ids.reshape(-1), rngs)]
    return {**batch, "pixels": np.stack(pixels).reshape(*ids.shape, *pixels[0].shape)}


def block_loss(scores, image_slots, caption_slots):
  """Symmetric cross-entropy, no temperature: scores [2B, 2B] (images x captions), the
  pair slot of each row and column -> CE(S, Y) + CE(S^T, Y^T), each a mean."""
  target = (image_slots[:, None] == caption_slots[None, :]).astype(scores.dtype)
  ce = lambda s, y: optax.softmax_cross_entropy(s, y).mean()
  return ce(scores, target) + ce(scores.T, target.T)


def make_train_step(tx, options, dropout, seed, image_tokens=None):
  """-> step(state, features, batch) -> (state, metrics); features: (image tokens [I, R, P],
  caption tokens [C, T, P], column sources [C, T], table [11, R]). With `image_tokens`
  ((frozen params, pixels) -> unit tokens; augmentation on) the first feature is the
  frozen params and the batch holds each block's augmented "pixels" [2B, 6, H, W, C]."""
  model = scorer_lib.Scorer(dropout)

  def block_images(features, batch):
    if image_tokens is None:
      return lambda j: features[0][batch["images"][:, j]]
    pixels = batch["pixels"]
    tokens = image_tokens(features[0], pixels.reshape(-1, *pixels.shape[2:]))
    tokens = tokens.reshape(*pixels.shape[:2], *tokens.shape[1:])
    return lambda j: tokens[:, j]

  def loss_fn(params, features, batch, key):
    _, caption_tokens, sources, table = features
    images_of = block_images(features, batch)
    losses = []
    for j in range(len(DATASETS) * VERSIONS):
      captions = batch["captions"][:, j]
      block = maps.make_maps(images_of(j), caption_tokens[captions],
                             sources[captions], table,
                             dataclasses.replace(options, standardize=True))
      n = block.shape[0]
      scores = model.apply({"params": params}, block.reshape(n * n, *block.shape[2:]),
                           train=True, rngs={"dropout": jax.random.fold_in(key, j)})
      losses.append(block_loss(scores.reshape(n, n), batch["image_slots"][:, j],
                               batch["caption_slots"][:, j]))
    losses = jnp.stack(losses)
    return losses.sum() / 3, losses

  def step(state, features, batch):
    key = jax.random.fold_in(jax.random.key(seed), state.step)
    (loss, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, features, batch, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
    metrics.update({f"loss/{DATASETS[j // 2]}_v{j % 2}": losses[j] for j in range(len(losses))})
    return state, metrics

  return step


def map_options(config):
  return maps.MapOptions(config.column_rule, config.functional_rows, per_map=config.per_map)


def scorer_info(config, rows):
  """What dcsm.json records of a scorer trained with `config`."""
  return {"rows": rows, "columns": maps.COLUMNS, "column_rule": config.column_rule,
          "functional_rows": config.functional_rows, "per_map": config.per_map,
          "dropout": config.dropout, "backbone": config.model, "lr": config.lr,
          "batch_size": config.batch_size, "seed": config.seed, "augment": config.augment,
          "table_seed": config.table_seed, "table_generator": config.table_generator,
          "init": config.init}


def evaluate_now(config, features, params, table, step, writer):
  """Accuracy of the scorer on config.eval.benchmarks (items with their image) ->
  eval_step_N.json, metrics."""
  dense = scoring.DenseScorer(features, params, table, map_options(config))
  result = {}
  for name in config.eval.benchmarks:
    bench = benchmarks.read(name, config.eval.data_dir)
    result[name] = multiple_choice.evaluate(
        dense, evaluate.usable_items(bench, False),
        lambda c, bench=bench: benchmarks.rewrite(bench, c, True, True))
  if writer is None:
    return
  loop.write_json(os.path.join(config.workdir, f"eval_step_{step}.json"),
                  {"step": step, **result})
  scalars = {f"eval/{name}/accuracy": r["accuracy"] for name, r in result.items()}
  writer.write(step, scalars)
  tqdm.tqdm.write(f"step {step} evaluation: {loop.format_metrics(scalars)}")


class ScorerTraining:
  """The DCSM scorer's objective on a frozen model (`trainer.run.Objective`)."""

  # Runs that predate table_generator drew their table with numpy.
  resume_rules = config_values.ResumeRules(added_keys={"init": "flax",
                                                      "table_generator": "numpy"})
  inputs = ()

  def __init__(self, config):
    self.config = config
    self.rows_per_step = 2 * config.batch_size
    self.curve_panels = (
        ("loss", ("loss",) + tuple(f"loss/{d}_v{v}" for d in DATASETS for v in range(VERSIONS))),
        ("multiple-choice accuracy", tuple(f"eval/{n}/accuracy"
                                           for n in config.eval.benchmarks)))

  def check(self, ctx):
    config = self.config
    maps.MapOptions(config.column_rule, config.functional_rows).check()
    config_values.number(config, "batch_size", 1, integer=True)
    config_values.number(config, "lr", 0, low_open=True)
    config_values.number(config, "dropout", 0, 1, high_open=True)
    scorer_lib.check_init(config.init)
    # Resolved before the run's config is stored, so that a resume draws the same table.
    config.table_generator = maps.check_table_generator(config.table_generator,
                                                        "config.table_generator")
    errors.require_writable_dir(config.workdir, "workdir")
    locations.check_apart([("config.workdir", config.workdir)], [
        ("config.model", config.model), ("config.data_dir", config.data_dir),
        ("config.eval.data_dir", config.eval.data_dir)])
    self.pairs = procedural.read_pairs(config.data_dir)
    for name in config.eval.benchmarks:  # a bad benchmark or a missing image fails here
      evaluate.usable_items(benchmarks.read(name, config.eval.data_dir), False)

  def prepare(self, ctx):
    config, mesh = self.config, ctx.mesh
    self.blocks = Blocks(self.pairs, config.batch_size, config.seed)
    features = self.features = maps.TokenFeatures(config.model, config.feature_batch_size,
                                                   mesh=mesh)
    ctx.watch.lap("load")
    self.table = maps.functional_table(features.rows, config.table_seed, config.table_generator)
    sources = np.stack([maps.column_sources(c, features.tokenizer, config.column_rule)
                        for c in self.blocks.captions])
    # Without augmentation every image's tokens are computed once; with it, the frozen
    # image tower runs inside the step on each step's augmented images.
    images = features.params if config.augment else features.images(self.blocks.images)
    self.frozen = jax.device_put((images, features.texts(self.blocks.captions), sources,
                                  self.table), sharding.replicated(mesh))
    self.batch_at = self.blocks.at if not config.augment else AugmentedBatches(
        self.blocks, features.preprocessing, config.seed)
    ctx.watch.lap("features")
    params = scorer_lib.init_params(features.rows, maps.COLUMNS, config.seed, config.init)
    return run.Plan(params, tuple(params), loop.total_steps(config, self.blocks.steps_per_epoch))

  def begin(self, ctx, state, left_fresh, state_sharding, tx):
    config, mesh = self.config, ctx.mesh
    step = jax.jit(make_train_step(tx, map_options(config), config.dropout, config.seed,
                                   self.features.image_tokens if config.augment else None),
                   in_shardings=(state_sharding, sharding.replicated(mesh),
                                 sharding.batch_sharding(mesh)),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    evaluate = None
    if config.eval.benchmarks:
      evaluate = lambda s, st: evaluate_now(config, self.features, st.params, self.table, s,
                                            ctx.writer)
    return run.Steps(state, lambda st, batch: step(st, self.frozen, batch), self.batch_at,
                     evaluate)

  def finish(self, params):
    config = self.config
    out = checkpoint.save(os.path.join(config.workdir, "scorer"), params, self.table,
                          scorer_info(config, self.features.rows))
    return ({"scorer_dir": out, "pairs": {k: len(v) for k, v in self.pairs.items()}},
            f"scorer: {out}; metrics: {os.path.join(config.workdir, 'metrics.jsonl')}")


def train(config, allow_config_change=False):
  """Trains (or resumes) the scorer in config.workdir (`trainer.run.train`) -> the final
  TrainState; the scorer folder goes to workdir/scorer (`checkpoint.save`)."""
  return run.train(config, ScorerTraining(config), allow_config_change)
