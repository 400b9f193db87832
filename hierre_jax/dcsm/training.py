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

With config.eval.validation_pairs (and train_pairs) each evaluation also scores pairs of the
data's val (and train) split in the training format (`validation`): the learning curves.
config.eval.select="validation" exports the scorer of the evaluated step whose mean
validation pair accuracy is highest (the earliest of equals; each improvement along the
run kept in workdir/selected/step_N); "last" the last step's.
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
from hierre_jax.dcsm import validation
from hierre_jax.evaluators import multiple_choice
from hierre_jax.trainer import loop
from hierre_jax.trainer import metric_writer
from hierre_jax.trainer import run

DATASETS = procedural.DATASETS
VERSIONS = procedural.VERSIONS
SELECTIONS = ("last", "validation")
SELECTED = "selected"  # workdir/selected/step_N: the best scorer on validation so far
VALIDATION_KEY = "val/mean_pair_accuracy"


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


def check_selection(config):
  """config.eval.select is one of SELECTIONS; "validation" needs validation pairs scored at
  the end and along the way."""
  if config.eval.select not in SELECTIONS:
    raise errors.ConfigError(f"config.eval.select={config.eval.select!r}: use one of "
                             f"{', '.join(SELECTIONS)}")
  if config.eval.select == "validation" and not (
      config.eval.validation_pairs > 0 and config.eval.at_end and config.eval.every_steps > 0):
    raise errors.ConfigError("config.eval.select='validation' needs config.eval."
                             "validation_pairs > 0, config.eval.every_steps > 0 and "
                             "config.eval.at_end")


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


def evaluate_now(config, features, params, table, pair_sets=None):
  """Accuracy of the scorer on config.eval.benchmarks (items with their image) and the pair
  accuracy of each of `pair_sets` ({split: validation.PairAccuracy}) -> (result, scalars:
  with VALIDATION_KEY when "val" is scored)."""
  dense = scoring.DenseScorer(features, params, table, map_options(config))
  result = {}
  for name in config.eval.benchmarks:
    bench = benchmarks.read(name, config.eval.data_dir)
    result[name] = multiple_choice.evaluate(
        dense, evaluate.usable_items(bench, False),
        lambda c, bench=bench: benchmarks.rewrite(bench, c, True, True))
  scalars = {f"eval/{name}/accuracy": r["accuracy"] for name, r in result.items()}
  for split, accuracy in (pair_sets or {}).items():
    by_set = accuracy(params)
    result[f"{split}_pairs"] = by_set
    scalars.update({f"{split}/{name}/pair_accuracy": v for name, v in by_set.items()})
    scalars[f"{split}/mean_pair_accuracy"] = float(np.mean(list(by_set.values())))
  return result, scalars


def record_evaluation(config, step, result, scalars, writer):
  """eval_step_N.json and the metrics row of an evaluation (process 0)."""
  loop.write_json(os.path.join(config.workdir, f"eval_step_{step}.json"),
                  {"step": step, **result})
  writer.write(step, scalars)
  tqdm.tqdm.write(f"step {step} evaluation: {loop.format_metrics(scalars)}")


class Selection:
  """The scorer of the evaluated step with the highest mean validation pair accuracy: each
  one better than those before saved to workdir/selected/step_N before its metrics row is
  written, and none removed, so that metrics.jsonl (truncated to the restored step on
  resume) names a saved folder whatever a resumed run evaluates; `best()` -> (step,
  accuracy) from metrics.jsonl."""

  def __init__(self, workdir):
    self.workdir, self.folder = workdir, os.path.join(workdir, SELECTED)

  def rows(self):
    if not os.path.exists(os.path.join(self.workdir, "metrics.jsonl")):
      return []
    return [r for r in metric_writer.read_metrics(self.workdir) if VALIDATION_KEY in r]

  def best(self):
    rows = self.rows()
    if not rows:
      return None, -1.0
    row = max(rows, key=lambda r: (r[VALIDATION_KEY], -r["step"]))
    return row["step"], row[VALIDATION_KEY]

  def path(self, step):
    return os.path.join(self.folder, f"step_{step}")

  def offer(self, step, accuracy, save):
    """Saves (`save(folder)`) the scorer of `step` when `accuracy` beats the best so far."""
    best_step, best = self.best()
    if accuracy <= best and best_step != step:
      return
    save(self.path(step))


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
                                           for n in config.eval.benchmarks)),
        ("pair accuracy, training format", tuple(f"{split}/{name}/pair_accuracy"
                                                 for split in ("train", "val")
                                                 for name in DATASETS)))

  def check(self, ctx):
    config = self.config
    maps.MapOptions(config.column_rule, config.functional_rows).check()
    check_selection(config)
    config_values.number(config, "batch_size", 1, integer=True)
    config_values.number(config, "lr", 0, low_open=True)
    config_values.number(config, "dropout", 0, 1, high_open=True)
    for key in ("eval.validation_pairs", "eval.train_pairs"):
      config_values.number(config, key, 0, integer=True)
    scorer_lib.check_init(config.init)
    # Resolved before the run's config is stored, so that a resume draws the same table.
    config.table_generator = maps.check_table_generator(config.table_generator,
                                                        "config.table_generator")
    errors.require_writable_dir(config.workdir, "workdir")
    locations.check_apart([("config.workdir", config.workdir)], [
        ("config.model", config.model), ("config.data_dir", config.data_dir),
        ("config.eval.data_dir", config.eval.data_dir)])
    self.pairs = procedural.read_pairs(config.data_dir)
    self.pair_sets = {split: validation.first_pairs(config.data_dir, split, count)
                      for split, count in (("val", config.eval.validation_pairs),
                                           ("train", config.eval.train_pairs)) if count}
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
    self.total_steps = loop.total_steps(config, self.blocks.steps_per_epoch)
    return run.Plan(params, tuple(params), self.total_steps)

  def begin(self, ctx, state, left_fresh, state_sharding, tx):
    config, mesh = self.config, ctx.mesh
    step = jax.jit(make_train_step(tx, map_options(config), config.dropout, config.seed,
                                   self.features.image_tokens if config.augment else None),
                   in_shardings=(state_sharding, sharding.replicated(mesh),
                                 sharding.batch_sharding(mesh)),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    return run.Steps(state, lambda st, batch: step(st, self.frozen, batch), self.batch_at,
                     self.evaluation(ctx, state))

  def evaluation(self, ctx, state):
    """-> the loop's evaluate(step, state) (None when nothing is scored in training); with
    selection on validation, a resumed run first evaluates its restored step where a kill
    came between that step's checkpoint and its evaluation."""
    config = self.config
    if not (config.eval.benchmarks or self.pair_sets):
      return None
    dense = scoring.DenseScorer(self.features, None, self.table, map_options(config))
    pair_sets = {split: validation.PairAccuracy(dense, pairs)
                 for split, pairs in self.pair_sets.items()}
    selection = (Selection(config.workdir) if config.eval.select == "validation"
                 and ctx.is_main else None)

    def evaluate_at(at, st):
      params = jax.device_get(st.params)
      result, scalars = evaluate_now(config, self.features, params, self.table, pair_sets)
      if selection is not None:  # saved before its metrics row names it
        selection.offer(at, scalars[VALIDATION_KEY], lambda out: checkpoint.save(
            out, params, self.table, scorer_info(config, self.features.rows)))
      if ctx.writer is not None:
        record_evaluation(config, at, result, scalars, ctx.writer)

    start, every = int(state.step), config.eval.every_steps
    if (selection is not None and 0 < start < self.total_steps and every
        and start % every == 0 and start not in {r["step"] for r in selection.rows()}):
      evaluate_at(start, state)
    return evaluate_at

  def finish(self, params):
    config = self.config
    info = scorer_info(config, self.features.rows)
    chosen = {"select": config.eval.select, "step": self.total_steps}
    if config.eval.select == "validation":
      selection = Selection(config.workdir)
      step, accuracy = selection.best()
      params = checkpoint.load(selection.path(step))[0]  # verified on read
      chosen.update(step=step, validation_mean_pair_accuracy=accuracy)
    out = checkpoint.save(os.path.join(config.workdir, "scorer"), params, self.table,
                          {**info, "chosen": chosen})
    return ({"scorer_dir": out, "chosen": chosen,
             "pairs": {k: len(v) for k, v in self.pairs.items()}},
            f"scorer: {out} (step {chosen['step']}, {config.eval.select}); metrics: "
            f"{os.path.join(config.workdir, 'metrics.jsonl')}")


def train(config, allow_config_change=False):
  """Trains (or resumes) the scorer in config.workdir (`trainer.run.train`) -> the final
  TrainState; the scorer folder goes to workdir/scorer (`checkpoint.save`)."""
  return run.train(config, ScorerTraining(config), allow_config_change)
