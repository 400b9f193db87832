"""RE fine-tuning of the CLIP text tower (SPEC section 3).

  python -m hierre_jax.train --config configs/clip_b32.py [--config.key=value ...]

Reads top to bottom: check the config and the data, load the checkpoint, build the
optimizer (only the text tower and text projection train), restore the latest
checkpoint that verifies, run the jitted data-parallel step, log metrics, save
checkpoints, evaluate, export to Hugging Face. Multi-process runs (--distributed)
compute on every process and write files from process 0.
"""
import contextlib
import functools
import importlib.util
import os

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from hierre_jax import cli
from hierre_jax import embedding
from hierre_jax import errors
from hierre_jax import models
from hierre_jax import sharding
from hierre_jax.data import hierarcaps_csv
from hierre_jax.evaluators import hierarcaps
from hierre_jax.evaluators import suite
from hierre_jax.radial import losses
from hierre_jax.radial import train_batches
from hierre_jax.trainer import checks
from hierre_jax.trainer import curves
from hierre_jax.trainer import loop
from hierre_jax.trainer import metric_writer
from hierre_jax.trainer import model_dir as model_dir_lib
from hierre_jax.trainer import workdir_lock


def trained_groups(config, family):
  """The top-level parameter groups the optimizer updates (config.trainable): the family's
  text tower, or "root" (a free root vector params["root"], towers frozen; SPEC section
  6). Everything else stays bit-identical."""
  return family.text_groups if config.trainable == "text_tower" else ("root",)


def pulls_back(config):
  """Whether the loss has the pull-back term L_p (never when only the root trains: the
  frozen tower's features are then the pretrained ones)."""
  return bool(config.lambda_p) and config.trainable == "text_tower"


def host_batch(config, batches, step, shards):
  """The step's inputs from `TrainBatches`: (texts, [B, 8] text index), the texts packed
  in rows of the model's maximum length in `shards` parts (config.pack_texts; with the
  root text when it is the tower's own) or padded per length group; for config.loss ==
  "contrastive" (padded) `batches.contrastive_batch(step, config.tiers)`."""
  if config.loss == "contrastive":
    return batches.contrastive_batch(step, tuple(config.tiers))
  if config.pack_texts:
    texts = batches.packed_batch(step, shards, batches.ids.shape[-1],
                                 config.pack_rows_multiple, config.root == "empty_string")
  else:
    texts = batches.batch(step)
  return texts, batches.text_indices(step)


def make_train_step(model_config, config, tx, root_ids, mesh, state_sharding):
  """-> jitted fn(state, tables, batch) -> (state, metrics), batch as `host_batch` gives it.

  root_ids: [1, 77] ids of the empty string, padded (`embedding.root_ids(tokenizer, 77)`),
  the root unless params hold their own params["root"] (config.root); packed batches
  carry it themselves (`host_batch`). `tables` is what
  `step_tables` returns: "pullback" (None, the frozen text params, or the frozen features
  of every training text looked up by the text index) and "images" (config.loss ==
  "contrastive": the frozen features of every training image, looked up by the image index).
  """
  encode = embedding.text_encoder(model_config, config.remat, config.compute_dtype)
  encode_packed = embedding.packed_text_encoder(model_config, config.remat,
                                                config.compute_dtype)
  family = models.family_of_config(model_config)
  trained = trained_groups(config, family)
  lambda_p = config.lambda_p if pulls_back(config) else 0.0
  own_root = config.root == "empty_string"  # the tower's own root: it moves with the weights

  def embed_rows(params, texts):
    """The batch's texts -> ([B, 8, P], the [P] root of the empty string if own_root).

    Packed (`packing.Packed`), the root is the last text of every shard; padded per
    length group ([B, n_g, L_g] ids each), it rides along with the first group, padded
    to its length: one pass less, and attention is causal, so the padding changes nothing.
    """
    if config.pack_texts:
      emb = encode_packed(params, texts)  # [S, N, P]
      root = emb[0, -1] if own_root else None
      return emb[:, :emb.shape[1] - own_root].reshape(-1, 8, emb.shape[-1]), root
    flat = [g.reshape(-1, g.shape[-1]) for g in texts]
    if own_root:
      flat[0] = jnp.concatenate([flat[0], root_ids[:, :flat[0].shape[-1]]])
    embs = [encode(params, ids) for ids in flat]
    root = embs[0][-1] if own_root else None
    embs = [e[:g.shape[0] * g.shape[1]].reshape(*g.shape[:2], -1) for e, g in zip(embs, texts)]
    return train_batches.merge_groups(embs, config.length_groups), root

  def hierarchy_loss(params, tables, batch):
    """The RE loss or its ablations (SPEC sections 3 and 6) on whole rows."""
    texts, text_index = batch
    emb, root = embed_rows(params, texts)
    if not own_root:
      root = params["root"]
    if config.trainable == "root":
      emb = jax.lax.stop_gradient(emb)  # frozen towers: no backward pass through them
    emb_orig = None
    if lambda_p:
      emb_orig = (tables["pullback"][text_index] if config.pullback_cache
                  else embed_rows(tables["pullback"], texts)[0])
    ec = (config.ec_k, config.ec_margin) if config.loss == "ec" else None
    return losses.total_loss(emb, root, emb_orig, lambda_p, config.lambda_e,
                             config.lambda_m, tuple(config.tiers), config.negatives, ec)

  def contrastive_loss(params, tables, batch):
    """CLIP's objective between each row's image and one of its positive texts (+ L_p)."""
    ids, text_index, image_index = batch
    text = encode(params, ids)
    loss = losses.contrastive(text, tables["images"][image_index],
                                   jax.lax.stop_gradient(family.log_logit_scale(params)))
    metrics = {"loss_clip": loss}
    if lambda_p:
      orig = (tables["pullback"][text_index[:, 0]] if config.pullback_cache
              else encode(tables["pullback"], ids))
      metrics["loss_pullback"] = losses.pullback_loss(text, jax.lax.stop_gradient(orig))
      loss = loss + lambda_p * metrics["loss_pullback"]
    return loss, dict(metrics, loss=loss)

  loss_fn = contrastive_loss if config.loss == "contrastive" else hierarchy_loss

  def step(state, tables, batch):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, tables, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.global_norm({k: grads[k] for k in trained})
    # Finite too, or the run stops before anything of this step is saved (`check_finite`).
    metrics["update_norm"] = optax.global_norm({k: updates[k] for k in trained})
    return loop.TrainState(state.step + 1, params, opt_state), metrics

  replicated = sharding.replicated(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(state_sharding, replicated, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, replicated))


def pullback_targets(config, model_config, params, tokenizer, batches, mesh, steps):
  """What the train step needs for the pull-back term L_p (SPEC section 3) in `steps`.

  None without the term (`pulls_back`). With config.pullback_cache: a [U, P] table over the U
  distinct training texts holding the frozen tower's features of the texts that `steps`
  use (all of them from one epoch on), computed once here instead of a frozen forward
  pass at every step; U * P * 4 bytes on every device (174 MB for the 85K HierarCaps
  texts at P=512). Else the frozen text params, a separate copy (the donated train
  state must not share buffers with them).
  """
  if not pulls_back(config):
    return None
  frozen = embedding.text_params(model_config, params)
  if not config.pullback_cache:
    return jax.device_put(jax.tree.map(np.array, frozen), sharding.replicated(mesh))
  used = np.unique(np.concatenate([np.zeros(0, np.int32)]
                                  + [batches.text_indices(s).ravel() for s in steps]))
  logging.info("pull-back cache: embedding %d of the %d distinct training texts with the "
               "frozen tower", len(used), len(batches.texts))
  table = np.zeros((len(batches.texts), model_config.projection_dim), np.float32)
  if len(used):  # none when a finished run is restarted
    table[used] = embedding.embed_texts(model_config, frozen, tokenizer,
                                        [batches.texts[i] for i in used],
                                        config.eval.text_batch_size, mesh,
                                        config.length_multiple, config.eval.pack_texts,
                                        config.compute_dtype)
  return jax.device_put(table, sharding.replicated(mesh))


def step_tables(config, model_config, params, model_dir, tokenizer, batches, mesh, steps,
                image_features=None):
  """The step's constant inputs: {"pullback": `pullback_targets`, "images": None, or for
  config.loss == "contrastive" the [I, P] features of `batches.images` (files under
  config.train_images_dir) by the frozen image tower, read from and added to
  `image_features` ({path: features}, `embedding.Embedder`)}."""
  images = None
  if config.loss == "contrastive":
    embedder = embedding.Embedder(model_config, params, model_dir, mesh=mesh,
                                   image_batch_size=config.eval.image_batch_size,
                                   image_features=image_features,
                                   image_workers=config.eval.image_workers,
                                   compute_dtype=config.compute_dtype)
    paths = [os.path.join(config.train_images_dir, name) for name in batches.images]
    images = jax.device_put(embedder.images(paths), sharding.replicated(mesh))
  return {"pullback": pullback_targets(config, model_config, params, tokenizer, batches, mesh,
                                       steps), "images": images}


def initial_root(config, model_config, params, tokenizer, batches, mesh):
  """[P] root of config.root (SPEC section 6) from the pretrained `params`; None for
  "empty_string" (the tower's own, recomputed at every step).

  "mean": the normalised mean of the pretrained features of every text of every training
  row (positives and negatives, all tiers; a text counted as often as it occurs);
  "origin": zeros; "pretrained": the pretrained feature of the empty string.
  """
  if config.root == "empty_string":
    return None
  if config.root == "origin":
    return np.zeros(model_config.projection_dim, np.float32)
  texts = [""] if config.root == "pretrained" else batches.texts
  feats = embedding.embed_texts(model_config, embedding.text_params(model_config, params),
                                tokenizer, texts, config.eval.text_batch_size, mesh,
                                config.length_multiple, config.eval.pack_texts,
                                config.compute_dtype)
  if config.root == "pretrained":
    return feats[0]
  mean = np.bincount(batches.text_index.ravel(), minlength=len(texts)) @ feats.astype(np.float64)
  return (mean / np.linalg.norm(mean)).astype(np.float32)


def evaluate_now(config, model_config, params, model_dir, step, writer, mesh, evaluators,
                 image_features):
  """HierarCaps P/R/tau_d (+ held-out angles) and the in-run suite `evaluators` of the
  current params -> eval_step_N.json, metrics.

  Every process takes part (the embeddings are sharded over the whole mesh: no process
  waits alone); process 0 (`writer` not None) writes the results. `image_features`
  ({path: features}) holds the frozen image tower's features from the run's earlier
  evaluations: each image is embedded once per run.
  """
  e = config.eval
  embedder = embedding.Embedder(model_config, params, model_dir, e.text_batch_size,
                                 e.image_batch_size, config.length_multiple, mesh,
                                 image_features if e.keep_image_features else None,
                                 e.pack_texts, e.image_workers, config.compute_dtype)
  result = {}
  if e.test_csv:
    result = hierarcaps.evaluate_hierarcaps(embedder, e.test_csv, e.images_dir)
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
  checks.validate(config)
  errors.require_writable_dir(config.workdir, "workdir")
  if config.export_dir:
    errors.require_writable_dir(config.export_dir, "export folder")
  data = hierarcaps_csv.read_hierarchies(config.train_csv, config.skip_bad_rows)
  if config.batch_size > len(data):
    raise checks.ConfigError(
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


def train_and_export(config, allow_config_change=False):
  """Runs (or resumes) training in config.workdir; returns the final TrainState.

  Nothing is written before the config and the training file are checked. One run at a
  time holds the workdir (`workdir_lock`). A workdir that holds checkpoints resumes from
  the newest one that verifies, if the config's computational keys are unchanged; with
  `allow_config_change` they may differ, and a train state of another layout is restored
  where both have the same leaves (the rest starts afresh, recorded in
  config_changes.jsonl).
  """
  watch = loop.Stopwatch()
  data = check_inputs(config)
  evaluators = suite.from_config(config.eval)  # reads their files: a bad path fails here
  watch.lap("read_data")
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  is_main = jax.process_index() == 0  # one process writes files; every process computes
  # A damaged or missing config.model is refused before anything is written.
  source = None if config.get("random_init") else models.load(config.model, config.scan_layers)
  with workdir_lock.WorkdirLock(config.workdir) if is_main else contextlib.nullcontext():
    return train_locked(config, data, evaluators, mesh, allow_config_change, is_main, watch,
                        source)


def train_locked(config, data, evaluators, mesh, allow_config_change, is_main, watch, source):
  """train_and_export once the inputs are checked and the workdir is held; `watch` (a
  `loop.Stopwatch`) gets the seconds of each phase (train_summary.json "seconds"); `source`:
  `models.load` of config.model, None for a random model."""
  loop.apply_runtime_options(config)
  for row, reason in data.skipped[:5]:
    logging.warning("%s: skipped row %d: %s", config.train_csv, row, reason)

  manager = loop.open_run(config, allow_config_change, is_main,
                          inputs=[("train_csv", config.train_csv)])
  if is_main:
    if data.skipped:
      loop.write_json(os.path.join(config.workdir, "skipped_rows.json"),
                 {"file": config.train_csv, "rows": [
                     {"row": row, "reason": reason} for row, reason in data.skipped]})
  family, model_config, params, model_dir = source or models.load(
      model_dir_lib.prepare_model_dir(config, is_main, allow_config_change), config.scan_layers)
  hf_config = family.load_hf_config(model_dir)
  if is_main:
    model_dir_lib.save_model_info(family, hf_config, model_dir, config.workdir)
  tokenizer = family.load_tokenizer(model_dir)
  watch.lap("load_model")

  batches = train_batches.TrainBatches(
      data, tokenizer, config.batch_size, config.seed,
      functools.partial(family.pool_index, model_config), family.max_length,
      config.length_multiple, config.length_groups)
  watch.lap("tokenize")
  total_steps = loop.total_steps(config, batches.steps_per_epoch)
  logging.info("%d rows (%d skipped), %d steps/epoch (%d rows per epoch left out by the last "
               "partial batch), %d steps", len(data), data.num_skipped, batches.steps_per_epoch,
               batches.rows_left_out_per_epoch, total_steps)

  tx = loop.make_optimizer(config, total_steps, trained_groups(config, family))
  # A root of its own (config.root) is a parameter: checkpointed, exported, evaluated with.
  with_root = config.root != "empty_string"
  placeholder = {"root": np.zeros(model_config.projection_dim, np.float32)} if with_root else {}
  state, state_sharding = loop.create_train_state({**params, **placeholder}, tx, mesh)
  try:
    state, left_fresh = loop.restore_or_start(manager, state, allow_config_change,
                                              config.workdir, is_main)
    if with_root and (left_fresh is None or "params/root" in left_fresh):
      root = initial_root(config, model_config, params, tokenizer, batches, mesh)
      state = state.replace(params={**state.params, "root": jax.device_put(
          root, state_sharding.params["root"])})
    start = int(state.step)
    watch.lap("restore_or_start")
    # Text-tower (or root) training never changes the image tower: each image's features
    # are computed once per run, for the contrastive objective and every evaluation, and
    # kept in the workdir for resumptions and later evaluations of the run.
    image_features = {}
    if config.eval.keep_image_features and config.eval.get("store_image_features", True):
      image_features = embedding.open_image_store(
          os.path.join(config.workdir, embedding.IMAGE_FEATURES), model_config, params,
          family.preprocessing(model_dir, model_config), config.compute_dtype)
    # The pull-back table over every step's texts, not only the remaining ones: its values
    # (batching, roundoff) are then the same wherever the run starts, and a resumed run
    # ends bit-identical to an uninterrupted one.
    tables = step_tables(config, model_config, params, model_dir, tokenizer, batches, mesh,
                         range(total_steps), image_features)
    watch.lap("pullback_cache" if config.loss != "contrastive" else "pullback_cache_and_images")
    writer = metric_writer.MetricWriter(config.workdir, resume_step=start) if is_main else None
    train_step = make_train_step(model_config, config, tx,
                                 embedding.root_ids(tokenizer, family.max_length), mesh,
                                 state_sharding)
    evaluate = None
    if config.eval.test_csv or evaluators:
      evaluate = lambda step, state: evaluate_now(config, model_config, state.params, model_dir,
                                                  step, writer, mesh, evaluators, image_features)
    state = loop.run(
        config, state, lambda state, batch: train_step(state, tables, batch),
        lambda step: sharding.put_global_batch(
            host_batch(config, batches, step, mesh.devices.size), mesh),
        total_steps, manager, writer, evaluate, watch)
    watch.lap()  # counted by phase inside loop.run
  finally:
    manager.close()  # finishes (or fails) a pending write before the program ends
  if not is_main:
    return state
  loop.close_metrics(writer, config.workdir)

  export_dir = model_dir_lib.export(family, jax.device_get(state.params), hf_config, model_dir,
                                    config)
  watch.lap("export")
  loop.write_json(os.path.join(config.workdir, "train_summary.json"), {
      "steps": total_steps, "resumed_from": start, "export_dir": export_dir,
      "rows": len(data), "rows_skipped": data.num_skipped, "seconds": dict(watch.seconds)})
  print(f"wall time: {watch.summary()}")
  logs = os.path.join(config.workdir, "tensorboard")
  viewer = (f"tensorboard --logdir {logs}" if importlib.util.find_spec("tensorboard")
            else f"{logs}; pip install -e '.[tensorboard]' to view it")
  print(f"metrics: {os.path.join(config.workdir, 'metrics.jsonl')} (TensorBoard: {viewer}); "
        f"curves: {os.path.join(config.workdir, curves.CURVES_FILE)}; Hugging Face export: "
        f"{export_dir}")
  return state


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
