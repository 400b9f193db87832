"""RE fine-tuning of a dual encoder's text tower (SPEC section 3).

  python -m hierre_jax.train --config configs/clip_b32.py [--config.key=value ...]

Reads top to bottom: check the config and the data, load the checkpoint, build the
optimizer (only the text tower and text projection train), restore the latest
checkpoint that verifies, run the jitted data-parallel step (`radial.train_step`), log
metrics, save checkpoints, evaluate, export in the checkpoint's format. The outer run
is `trainer.run`'s. Multi-process runs (--distributed) compute on every process and write
files from process 0.
"""
import importlib.util
import os

from absl import flags
from absl import logging
import jax
import numpy as np
import tqdm

from hierre_jax.common import cli
from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.data import hierarcaps_csv
from hierre_jax.evaluators import hierarcaps
from hierre_jax.evaluators import suite
from hierre_jax.evaluators import uncertainty
from hierre_jax.radial import config as re_config
from hierre_jax.radial import train_batches
from hierre_jax.radial import train_step
from hierre_jax.trainer import curves
from hierre_jax.trainer import loop
from hierre_jax.trainer import model_dir as model_dir_lib
from hierre_jax.trainer import run


def evaluate_now(config, model, step, writer, mesh, evaluators, image_features):
  """HierarCaps P/R/tau_d (+ held-out angles) and the in-run suite `evaluators` of the
  `model` (the current params) -> eval_step_N.json, metrics.

  Every process takes part (the embeddings are sharded over the whole mesh: no process
  waits alone); process 0 (`writer` not None) writes the results. `image_features`
  ({path: features}) holds the frozen image tower's features from the run's earlier
  evaluations: each image is embedded once per run.
  """
  e = config.eval
  embedder = embedding.Embedder(model, embedding.EmbedOptions.from_config(config), mesh,
                                image_features if e.keep_image_features else None)
  result = {}
  if e.test_csv:
    result, _ = uncertainty.with_intervals(
        hierarcaps.evaluate_hierarcaps(embedder, e.test_csv, e.images_dir))
    if e.heldout_csv:
      test_images = set(hierarcaps_csv.read_hierarchies(e.test_csv).images)
      result["heldout"] = hierarcaps.angle_statistics(embedder, e.heldout_csv, test_images)
  suite_result = suite.evaluate(embedder, evaluators)
  if writer is None:
    return
  loop.write_json(os.path.join(config.workdir, f"eval_step_{step}.json"),
             {"step": step, **result, **suite_result})
  scalars = {k: result[k] for k in ("precision", "recall", "tau_d") if k in result}
  scalars.update({k: v for k, v in result.get("heldout", {}).items() if k != "num_rows"})
  scalars.update({k: v for k, v in suite_result.items() if isinstance(v, float)})  # no counts
  writer.write(step, {f"eval/{k}": v for k, v in scalars.items()})
  tqdm.tqdm.write(f"step {step} evaluation: {loop.format_metrics(scalars)}")


def check_inputs(config):
  """Checks the config values and reads the training file (and, for config.loss == "contrastive",
  finds every training image) before anything is written -> the training rows."""
  re_config.validate(config)
  errors.require_writable_dir(config.workdir, "workdir")
  if config.export_dir:
    errors.require_writable_dir(config.export_dir, "export folder")
  data = hierarcaps_csv.read_hierarchies(config.train_csv, config.skip_bad_rows)
  if config.batch_size > len(data):
    raise errors.ConfigError(
        f"config.batch_size={config.batch_size}: more than the {len(data)} training rows of "
        f"{config.train_csv}; use at most {len(data)}")
  if config.loss == "contrastive":
    hierarcaps_csv.image_paths(data, config.train_images_dir, config.train_csv)
  model_dir_lib.check_locations(config, data_inputs(config))
  return data


def data_inputs(config):
  """(what, path) of every file or folder the run reads data from."""
  e = config.eval
  return [("config.train_csv", config.train_csv), ("config.train_images_dir",
                                                   config.train_images_dir),
          ("config.eval.test_csv", e.test_csv), ("config.eval.heldout_csv", e.get("heldout_csv")),
          ("config.eval.images_dir", e.get("images_dir")),
          ("config.eval.data_dir", e.data_dir if e.suite.strip() else "")] + [
              (f"config.eval.paths.{k}", v) for k, v in e.paths.items()]


# What RE training computes on the sphere only (the contrastive ablation's cosine logits;
# the normalised mean of features as a fixed root).
SPHERE_ONLY = {"loss": "contrastive", "root": "mean"}


def check_geometry(config, model):
  """`model`, if config's objective is defined in its space; else a one-line ConfigError.
  Off the sphere (MERU) the RE angles, radii and pull-back are the geometry's
  (`geometry.lorentz`)."""
  if model.geometry.name != "sphere":
    for key, value in SPHERE_ONLY.items():
      if config[key] == value:
        raise errors.ConfigError(f"config.{key}={value!r}: defined on the sphere; "
                                 f"{model.model_dir} lives in {model.geometry.name} space")
    if config.loss == "ec" and config.root != "origin" and model.geometry.name == "lorentz":
      # MERU's cone aperture is measured from the origin; the EC angle from the root
      raise errors.ConfigError(
          f"config.loss='ec' with config.root={config.root!r}: in {model.geometry.name} space "
          "the entailment cone's aperture is measured from the origin while the angle is "
          "measured from the root; use config.root='origin' (MERU's cones)")
  return model


class RadialEmbedding:
  """The RE objective (`trainer.run.Objective`) of a train config."""

  resume_rules = re_config.RESUME_RULES
  curve_panels = curves.PANELS

  def __init__(self, config):
    self.config = config
    self.rows_per_step = config.batch_size
    self.inputs = [("train_csv", config.train_csv)]

  def check(self, ctx):
    config = self.config
    self.data = check_inputs(config)
    self.evaluators = suite.from_config(config.eval)  # reads their files: a bad path fails here
    ctx.watch.lap("read_data")
    # A damaged or missing config.model is refused before anything is written.
    self.model = (None if config.get("random_init")
                  else check_geometry(config, models.load(config.model, config.scan_layers)))
    model_dir_lib.check_export_format(
        config, self.model.family if self.model else model_dir_lib.random_family(config))

  def prepare(self, ctx):
    config, data = self.config, self.data
    for row, reason in data.skipped[:5]:
      logging.warning("%s: skipped row %d: %s", config.train_csv, row, reason)
    if ctx.is_main and data.skipped:
      loop.write_json(os.path.join(config.workdir, "skipped_rows.json"),
                      {"file": config.train_csv, "rows": [
                          {"row": row, "reason": reason} for row, reason in data.skipped]})
    model = self.model = self.model or check_geometry(config, models.load(
        model_dir_lib.prepare_model_dir(config, ctx.is_main, ctx.allow_config_change),
        config.scan_layers))
    if ctx.is_main:
      model_dir_lib.save_model_info(model, config.workdir)
    ctx.watch.lap("load_model")
    self.batches = train_batches.TrainBatches(
        data, model.tokenizer, config.batch_size, config.seed, model.pool_index,
        model.max_length, config.length_multiple, config.length_groups)
    ctx.watch.lap("tokenize")
    total_steps = loop.total_steps(config, self.batches.steps_per_epoch)
    logging.info("%d rows (%d skipped), %d steps/epoch (%d rows per epoch left out by the "
                 "last partial batch), %d steps", len(data), data.num_skipped,
                 self.batches.steps_per_epoch, self.batches.rows_left_out_per_epoch,
                 total_steps)
    self.total_steps = total_steps
    # A root of its own (config.root) is a parameter: checkpointed, exported, evaluated with.
    placeholder = ({"root": np.zeros(model.embedding_size, np.float32)}
                   if config.root != "empty_string" else {})
    return run.Plan({**model.params, **placeholder},
                    train_step.trained_groups(config, model.family), total_steps)

  def begin(self, ctx, state, left_fresh, state_sharding, tx):
    config, model, mesh = self.config, self.model, ctx.mesh
    if config.root != "empty_string" and (left_fresh is None or "params/root" in left_fresh):
      root = train_step.initial_root(config, model, self.batches, mesh)
      state = state.replace(params={**state.params, "root": jax.device_put(
          root, state_sharding.params["root"])})
    # Text-tower (or root) training never changes the image tower: each image's features
    # are computed once per run, for the contrastive objective and every evaluation, and
    # kept in the workdir for resumptions and later evaluations of the run.
    image_features = {}
    if config.eval.keep_image_features and config.eval.get("store_image_features", True):
      image_features = embedding.open_image_store(
          os.path.join(config.workdir, embedding.IMAGE_FEATURES), model, config.compute_dtype)
    # The pull-back table over every step's texts, not only the remaining ones: its values
    # (batching, roundoff) are then the same wherever the run starts, and a resumed run
    # ends bit-identical to an uninterrupted one.
    tables = train_step.step_tables(config, model, self.batches, mesh, range(self.total_steps),
                                    image_features)
    ctx.watch.lap("pullback_cache" if config.loss != "contrastive"
                  else "pullback_cache_and_images")
    step = train_step.make_train_step(model, config, tx, mesh, state_sharding)
    evaluate = None
    if config.eval.test_csv or self.evaluators:
      evaluate = lambda s, st: evaluate_now(config, model.with_params(st.params), s, ctx.writer,
                                            mesh, self.evaluators, image_features)
    return run.Steps(state, lambda st, batch: step(st, tables, batch),
                     lambda s: train_step.host_batch(config, self.batches, s, mesh.devices.size),
                     evaluate)

  def finish(self, params):
    export_dir = model_dir_lib.export(self.model, params, self.config)
    logs = os.path.join(self.config.workdir, "tensorboard")
    viewer = (f"tensorboard --logdir {logs}" if importlib.util.find_spec("tensorboard")
              else f"{logs}; pip install -e '.[tensorboard]' to view it")
    summary = {"export_dir": export_dir, "rows": len(self.data),
               "rows_skipped": self.data.num_skipped}
    return summary, (f"metrics: {os.path.join(self.config.workdir, 'metrics.jsonl')} "
                     f"(TensorBoard: {viewer}); curves: "
                     f"{os.path.join(self.config.workdir, curves.CURVES_FILE)}; export: "
                     f"{export_dir}")


def train_and_export(config, allow_config_change=False):
  """Runs (or resumes) RE training in config.workdir (`trainer.run.train`); returns the
  final TrainState. The export goes to config.export_dir (default workdir/export)."""
  return run.train(config, RadialEmbedding(config), allow_config_change)


def main(argv):
  del argv
  if FLAGS.distributed:
    sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id)
  train_and_export(FLAGS.config, FLAGS.allow_config_change)


FLAGS = flags.FLAGS

if __name__ == "__main__":
  cli.define_train_flags("a configs/*.py file")
  flags.DEFINE_bool("distributed", False, "Multi-process run: call jax.distributed.initialize() "
                    "(Cloud TPU, SLURM and Open MPI need nothing else).")
  flags.DEFINE_string("coordinator_address", None, "With --distributed elsewhere: host:port of "
                      "process 0, e.g. 127.0.0.1:12355 (or JAX_COORDINATOR_ADDRESS).")
  flags.DEFINE_integer("num_processes", None, "With --distributed elsewhere: process count.")
  flags.DEFINE_integer("process_id", None, "With --distributed elsewhere: this process's index.")
  flags.mark_flags_as_required(["config"])
  cli.run(main)
