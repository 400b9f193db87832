"""The outer run every objective shares (RE, the contrastive objective, the DCSM scorer):
check the inputs before anything is written, hold the workdir, open its checkpoints,
set up the objective, restore the newest verified checkpoint, run the loop, export,
summarise. What is trained, on what and how is the `Objective`'s.

  state = run.train(config, MyObjective(config), allow_config_change)
"""
import contextlib
import dataclasses
import os
import shutil
from typing import Callable, Protocol

import jax

from hierre_jax.common import config_values
from hierre_jax.common import sharding
from hierre_jax.trainer import loop
from hierre_jax.trainer import metric_writer
from hierre_jax.trainer import workdir_lock


@dataclasses.dataclass
class Context:
  """What the run hands an objective: the devices, whether this process writes files
  (process 0), the stopwatch of train_summary.json, and (once the state is restored) the
  metric writer of process 0 (None elsewhere)."""
  config: object
  mesh: object
  is_main: bool
  watch: loop.Stopwatch
  allow_config_change: bool
  writer: metric_writer.MetricWriter | None = None


@dataclasses.dataclass
class Plan:
  """What an objective trains: the initial parameters (any extra leaf, e.g. a root vector,
  included), the top-level groups the optimizer updates, and the step count; `frozen`:
  dotted paths of leaves inside those groups that stay fixed; `decay_matrices_only`:
  weight decay on leaves of 2 or more dimensions only (no gains, biases or scalars)."""
  params: dict
  trained: tuple
  total_steps: int
  frozen: tuple = ()
  decay_matrices_only: bool = False


@dataclasses.dataclass
class Steps:
  """How the loop advances: `step` jitted (state, batch on the mesh) -> (state, metrics);
  `batch_at` step -> the step's host batch; `evaluate` (step, state) -> None or None."""
  state: loop.TrainState
  step: Callable
  batch_at: Callable
  evaluate: Callable | None = None


class Objective(Protocol):
  """What one training objective supplies to `train`."""

  resume_rules: config_values.ResumeRules  # how a stored config.json is compared on resume
  rows_per_step: int                # the global batch, split over the devices
  inputs: list                      # (config key, path) of files whose content is pinned
  curve_panels: tuple               # (title, metric names) of workdir/curves.png

  def check(self, run: Context) -> None:
    """Checks the config and reads the data, before anything is written."""

  def prepare(self, run: Context) -> Plan:
    """Once the workdir is held: loads the model and data -> the `Plan`."""

  def begin(self, run: Context, state, left_fresh, state_sharding, tx) -> Steps:
    """After the restore (`left_fresh`: None when nothing was restored, else the leaves that
    start afresh) -> the `Steps`, with the state adjusted where the objective needs it."""

  def finish(self, params) -> tuple:
    """Process 0, after the last step: writes the result (an export) -> (entries of
    train_summary.json, the line that says where it went)."""


def train(config, objective, allow_config_change=False):
  """Runs (or resumes) `objective` in config.workdir -> the final TrainState.

  Nothing is written before `objective.check`; a workdir this run created is removed again
  when `prepare` fails (the model refused): no step was taken. One run at a time holds the
  workdir (`workdir_lock`). A workdir that holds checkpoints resumes from the newest one that
  verifies, if the config's computational keys and the pinned inputs are unchanged
  (`loop.open_run`); with `allow_config_change` they may differ, and a train state of
  another layout is restored where both have the same leaves.
  """
  watch = loop.Stopwatch()
  mesh = sharding.make_mesh()
  is_main = jax.process_index() == 0  # one process writes files; every process computes
  run = Context(config, mesh, is_main, watch, allow_config_change)
  objective.check(run)
  sharding.check_batch_size(objective.rows_per_step, mesh)
  created = is_main and not os.path.exists(config.workdir)
  with workdir_lock.WorkdirLock(config.workdir) if is_main else contextlib.nullcontext():
    loop.apply_runtime_options(config)
    manager = loop.open_run(config, allow_config_change, is_main, objective.resume_rules,
                            objective.inputs)
    refused = created
    try:
      plan = objective.prepare(run)
      refused = False
      tx = loop.make_optimizer(config, plan.total_steps, plan.trained, plan.frozen,
                               plan.decay_matrices_only)
      state, state_sharding = loop.create_train_state(plan.params, tx, mesh)
      state, left_fresh = loop.restore_or_start(manager, state, allow_config_change,
                                                config.workdir, is_main)
      start = int(state.step)
      watch.lap("restore_or_start")
      if is_main:
        run.writer = metric_writer.MetricWriter(config.workdir, resume_step=start)
      steps = objective.begin(run, state, left_fresh, state_sharding, tx)
      state = loop.run(config, steps.state, steps.step,
                       lambda s: sharding.put_global_batch(steps.batch_at(s), mesh),
                       plan.total_steps, manager, run.writer, steps.evaluate, watch)
      watch.lap()  # counted by phase inside loop.run
    finally:
      manager.close()  # finishes (or fails) a pending write before the program ends
      if refused:  # prepare refused the model: the workdir this run made holds only what it
        shutil.rmtree(config.workdir, ignore_errors=True)  # wrote, and no step was taken
  if not is_main:
    return state
  loop.close_metrics(run.writer, config.workdir, objective.curve_panels)
  summary, where = objective.finish(jax.device_get(state.params))
  watch.lap("export")
  loop.write_json(os.path.join(config.workdir, "train_summary.json"), {
      "steps": plan.total_steps, "resumed_from": start, **summary,
      "seconds": dict(watch.seconds)})
  print(f"wall time: {watch.summary()}\n{where}")
  return state
