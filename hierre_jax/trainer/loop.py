"""The training loop every objective shares: the train state and its masked optimizer,
resuming from the newest verified checkpoint, then step, check for divergence, log,
checkpoint and evaluate, with progress. What a step computes is the caller's."""
import collections
import contextlib
import json
import os
import time

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from hierre_jax.common import errors
from hierre_jax.common import sealed
from hierre_jax.common import sharding
from hierre_jax.trainer import checkpointing
from hierre_jax.trainer import checks
from hierre_jax.trainer import curves

INPUT_DIGESTS = "input_digests.json"  # open_run: the SHA-256 of each input file of the run


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: optax.OptState


def make_optimizer(config, total_steps, trained, frozen=(), decay_matrices_only=False):
  """AdamW (config.lr, schedule, b1, b2, eps, weight_decay, grad_clip_norm) on the top-level
  parameter groups `trained`; zero updates for the rest (optax masking) and for the leaves
  at the dotted paths `frozen`; with `decay_matrices_only`, weight decay on leaves of 2 or
  more dimensions only (MERU's: no decay of gains, biases and stored scalars)."""
  if config.schedule == "constant":
    lr = config.lr
  elif config.schedule == "warmup_cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, config.lr, config.warmup_steps,
                                            max(total_steps, config.warmup_steps + 1))
  else:
    raise ValueError(f"config.schedule={config.schedule!r}: use 'constant' or 'warmup_cosine'")
  decay_mask = ((lambda params: jax.tree.map(lambda x: jnp.ndim(x) >= 2, params))
                if decay_matrices_only else None)
  adamw = optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps,
                      weight_decay=config.weight_decay, mask=decay_mask)
  if config.grad_clip_norm:
    adamw = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)

  def labels(params):
    def group(name, tree):
      if name not in trained:
        return "freeze"
      if not any(f.startswith(f"{name}.") for f in frozen):
        return "train"
      return jax.tree_util.tree_map_with_path(
          lambda path, _: "freeze" if f"{name}.{dotted(path)}" in frozen else "train", tree)
    return {k: group(k, v) for k, v in params.items()}
  return optax.multi_transform({"train": adamw, "freeze": optax.set_to_zero()}, labels)


def dotted(path):
  """A jax tree path of dict keys -> 'a.b.c'."""
  return ".".join(str(getattr(p, "key", p)) for p in path)


def create_train_state(params, tx, mesh):
  """-> (TrainState at step 0 placed on the mesh, its sharding tree)."""
  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  state_sharding = sharding.param_sharding(state, mesh)
  return jax.device_put(state, state_sharding), state_sharding


def open_run(config, allow_config_change, is_main, rules, inputs=()):
  """-> the checkpoints of config.workdir (`checkpointing.RunCheckpoints`). A workdir that
  holds checkpoints must hold the same computational config (`checks.check_resume` by the
  objective's `rules`, a `config_values.ResumeRules`) and the same content of the `inputs`
  files ((config key, path) pairs: their SHA-256 digests are kept in
  workdir/input_digests.json).

  Process 0 writes workdir/config.json and the digests: now for a new run, else just before
  this run's first checkpoint, so that they always describe the saved steps (a resumed run
  that saves nothing, e.g. one that diverges at once, leaves them as they were).
  """
  manager = checkpointing.RunCheckpoints(os.path.join(config.workdir, "checkpoints"),
                                         config.keep_checkpoints)
  latest = manager.latest_step()
  digests = {key: {"path": path, "sha256": sealed.file_digest(path)} for key, path in inputs}
  digests_path = os.path.join(config.workdir, INPUT_DIGESTS)
  if latest is not None:
    if 0 < config.get("total_steps", 0) < latest:
      raise errors.ConfigError(f"config.total_steps={config.total_steps}: below step {latest}, "
                               f"the newest checkpoint in {config.workdir}; train at least that "
                               "far, or use another workdir")
    checks.check_resume(config.workdir, config, latest, rules, allow_config_change,
                        record=is_main)
    stored = read_json(digests_path) or {}
    changed = [key for key in digests if key in stored
               and stored[key]["sha256"] != digests[key]["sha256"]]
    if changed and not allow_config_change:
      raise errors.ConfigError(
          f"config.{changed[0]}={digests[changed[0]]['path']}: its content changed since step "
          f"{latest} was trained on it (SHA-256 differs from {digests_path}); restore the file, "
          "use another workdir, or pass --allow_config_change to go on with the new one")
  if is_main:
    def write_run_record():
      write_json(os.path.join(config.workdir, "config.json"), checks.config_json(config))
      write_json(digests_path, digests)
    if latest is None:
      write_run_record()
    else:
      manager.before_next_save = write_run_record
  return manager


def restore_or_start(manager, state, allow_config_change, workdir, record):
  """-> (the train state of the newest checkpoint that verifies, or `state` when there is
  none; the names of the leaves that start afresh, or None when nothing was restored).

  Without `allow_config_change` a saved state of another layout is refused
  (`checkpointing.CheckpointMismatch`); with it, leaves are restored where both layouts
  have them and the others, recorded in workdir/config_changes.jsonl, keep `state`'s.
  """
  if not allow_config_change:
    restored, step = manager.restore_latest(jax.tree.map(ocp.utils.to_shape_dtype_struct,
                                                         state))
    left_fresh = []
  else:
    restored, step, left_fresh = manager.restore_latest_partial(state)
  if restored is None:
    return state, None
  logging.info("resumed from step %d", step)
  if left_fresh:
    logging.warning("restored step %d partially (--allow_config_change): %d leaves of the train "
                    "state start afresh, e.g. %s", step, len(left_fresh), left_fresh[:3])
    if record:
      with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
        f.write(json.dumps({"resumed_at_step": step, "state_leaves_started_afresh": left_fresh})
                + "\n")
  return restored, left_fresh


def total_steps(config, steps_per_epoch):
  """config.total_steps when > 0, else config.num_epochs epochs of `steps_per_epoch`."""
  return (config.total_steps if config.total_steps > 0
          else config.num_epochs * steps_per_epoch)


def close_metrics(writer, workdir, panels=curves.PANELS):
  """Closes process 0's metric writer and plots workdir/curves.png (`panels`)."""
  writer.close()
  curves.plot_training_curves(workdir, panels=panels)


class DivergedError(errors.NonFiniteError):
  """A train step produced a non-finite loss, gradient or update."""


def check_finite(rows, first_step, manager):
  """Raises DivergedError at the first of `rows` (host metrics of steps first_step + 1, ...)
  holding a non-finite value: nothing of that step or later is logged, checkpointed,
  evaluated or exported, and the checkpoints on disk stay as they are."""
  for i, row in enumerate(rows):
    bad = sorted(k for k, v in row.items() if not np.isfinite(v))
    if bad:
      manager.wait_until_finished()
      good = manager.latest_step()
      raise DivergedError(
          f"training diverged at step {first_step + i + 1}: {', '.join(bad)} not finite "
          f"({format_metrics(row)}); stopped before saving it. The last good checkpoint is "
          + (f"step {good} in {manager.directory}" if good is not None else "none (no step "
             "was saved)") + "; lower config.lr, set config.grad_clip_norm, or check the data")


def format_metrics(metrics):
  return "  ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))


def write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f, indent=1)


def read_json(path):
  """The JSON value in `path`, None when there is no such file."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


class Stopwatch:
  """Wall seconds per phase of a run, summed over the phase's occurrences: `phase(name)`
  around a block, or `lap(name)`: the seconds since the previous lap (or the start)."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self._last = time.perf_counter()

  def lap(self, name=None):
    """Adds the seconds since the last lap to `name` (None: not counted)."""
    now = time.perf_counter()
    if name:
      self.seconds[name] += now - self._last
    self._last = now

  @contextlib.contextmanager
  def phase(self, name):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] += time.perf_counter() - start

  def summary(self):
    return "  ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())


def apply_runtime_options(config):
  """fp32 matmul precision and the persistent compilation cache of `config`."""
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  if config.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.expanduser(config.compilation_cache_dir))


def run(config, state, train_step, batch_at, total_steps, manager, writer, evaluate=None,
        stopwatch=None):
  """Steps from `state.step` to `total_steps` -> the final state.

  train_step: jitted (state, batch) -> (state, metrics); batch_at: step -> the step's global
  batch (already placed on the mesh). Every config.log_every steps the metrics' means go
  to `writer` (None on processes other than 0), every config.checkpoint_every steps (and
  at the end) the state to `manager`; `evaluate(step, state)`, when given, runs at step 0
  (config.eval.at_start), every config.eval.every_steps and at the end (at_end). Metrics
  are checked before any of these (`check_finite`). `stopwatch` gets the seconds of
  "compile" (the first call of each input shape, its step included), "steps" (the
  others), "checkpoints" and each evaluation ("eval_step_N").
  """
  watch = stopwatch or Stopwatch()
  start, every = int(state.step), config.eval.every_steps
  def evaluate_at(step):
    with watch.phase(f"eval_step_{step}"):
      evaluate(step, state)
  if evaluate and config.eval.at_start and start == 0:
    evaluate_at(0)
  pending, compiled_shapes = [], set()
  for step in tqdm.trange(start, total_steps, initial=start, total=total_steps, desc="train",
                          disable=writer is None):
    batch = batch_at(step)
    shapes = tuple(x.shape for x in jax.tree.leaves(batch))
    if shapes not in compiled_shapes:
      compiled_shapes.add(shapes)
      if writer is not None:
        tqdm.tqdm.write(f"step {step}: compiling the train step for input shapes {shapes} "
                        "(first call of a new shape)")
      with watch.phase("compile"):
        state, metrics = jax.block_until_ready(train_step(state, batch))
    else:
      with watch.phase("steps"):
        state, metrics = train_step(state, batch)
    pending.append(metrics)
    done = step + 1
    logs = done % config.log_every == 0 or done == total_steps
    saves = done % config.checkpoint_every == 0 or done == total_steps
    evaluates = evaluate and every and done % every == 0 and done < total_steps
    if logs or saves or evaluates:  # the steps since the last log, checked before any use
      with watch.phase("steps"):  # dispatch is asynchronous: here the host waits for them
        pending = jax.device_get(pending)
      check_finite(pending, done - len(pending), manager)
    if logs:
      means = {k: np.mean([r[k] for r in pending]) for k in pending[0]}
      pending = []
      if writer is not None:
        writer.write(done, means)
        tqdm.tqdm.write(f"step {done}: {format_metrics(means)}")
    if saves:
      with watch.phase("checkpoints"):
        manager.save(done, state)
    if evaluates:
      evaluate_at(done)
  with watch.phase("checkpoints"):
    manager.wait_until_finished()
  if evaluate and config.eval.at_end:
    evaluate_at(total_steps)
  return state
