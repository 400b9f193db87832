"""Orbax checkpoints of a train run, verified when they are read back.

Every save writes, beside the train state, the SHA-256 digest of each array leaf
(computed from the host copy of the state that is being saved). A restore first
compares the saved state's layout (leaf names, shapes, dtypes) with the run's: a
checkpoint of another layout (the user changed the model or a config key such as
`root`) is not corrupt, and is refused naming the leaves that differ, with nothing
moved, or restored leaf by leaf where both have it when asked knowingly
(`restore_latest_partial`). It then hashes what it read and compares. A step whose
bytes cannot be read or do not verify is reported in one line, moved out of the way
to `<checkpoints>_corrupt/<step>` (so that orbax can write that step again) and the
previous step is tried. A corrupt step is never restored, and a run never falls back
to step 0 without an error: not even a later run that finds only quarantined steps.
"""
import contextlib
import errno
import gc
import hashlib
import os
import re
import shutil
import sys

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from hierre_jax.common import errors
from hierre_jax.common import sharding


class CheckpointError(errors.UserError):
  """No checkpoint of a directory could be read and verified."""


class CheckpointMismatch(CheckpointError):
  """A readable checkpoint whose train state has another layout than the run's."""


def leaf_name(path):
  """'params/text_model/w', 'opt_state/inner_states/train/inner_state/0/mu/...': a leaf's
  path whatever the containers (a restored state has dicts where the run has dataclasses)."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def leaf_specs(tree):
  """{leaf name: (shape, dtype)} of the array leaves of a state or its metadata."""
  return {leaf_name(path): (tuple(x.shape), np.dtype(x.dtype))
          for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def layout_differences(saved, wanted):
  """'' when the leaf specs agree, else one line naming the leaves only in each and those of
  another shape or dtype."""
  only_saved = sorted(set(saved) - set(wanted))
  only_wanted = sorted(set(wanted) - set(saved))
  changed = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
  parts = [f"{label} {len(keys)} {keys[:4]}{' ...' if len(keys) > 4 else ''}"
           for label, keys in (("only in the checkpoint:", only_saved),
                               ("only in this run:", only_wanted),
                               ("of another shape or dtype:", changed)) if keys]
  return "; ".join(parts)


def leaf_digests(tree):
  """{leaf name: sha256 hex} of every array leaf of a (host or fully replicated) pytree."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    x = np.ascontiguousarray(np.asarray(leaf))
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
    out[leaf_name(path)] = h.hexdigest()
  return out


KEYSTR_PART = re.compile(r"\.(\w+)|\['([^']*)'\]|\[(\d+)\]")


def saved_leaf_name(key):
  """A digest file's key -> `leaf_name` form; steps saved before 2026-11-30 used
  jax.tree_util.keystr (".opt_state.inner_states['train']" or "['params']['w']")."""
  if not key.startswith((".", "[")):
    return key
  return "/".join(next(g for g in m.groups() if g is not None) for m in KEYSTR_PART.finditer(key))


def params_of(state):
  """The parameters of a TrainState, or of its raw restored dict."""
  return state["params"] if isinstance(state, dict) else state.params


def root_cause(error):
  """First line of the innermost cause of `error` (TensorStore's own message, not orbax's)."""
  while error.__cause__ is not None:
    error = error.__cause__
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


@contextlib.contextmanager
def unraisable_errors_dropped():
  """orbax reads arrays concurrently; once one read fails, the others' errors surface later
  as 'Exception ignored in coroutine' tracebacks. The failure is reported once instead."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook


class RunCheckpoints:
  """The `checkpoints/` directory of a train workdir: save, verified restore, fallback."""

  def __init__(self, directory, max_to_keep=None, read_only=False):
    """`read_only` (evaluation): unusable steps are skipped but not moved."""
    self.directory, self.read_only = os.path.abspath(directory), read_only
    self.before_next_save = None  # called once before the next save (`loop.open_run`)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "digests": ocp.JsonCheckpointHandler()})

  def save(self, step, state):
    """Starts an asynchronous save of `state` with the digests of its leaves.

    Raises OSError(ENOSPC) before writing anything when the disk has less free space
    than the state's size (orbax's own failure on a full disk is a storm of tracebacks
    from its background threads).
    """
    need = sum(x.nbytes for x in jax.tree.leaves(state)) + (1 << 20)
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise OSError(errno.ENOSPC, f"checkpoint step {step} needs about {need / 1e6:.1f} MB, "
                    f"{free / 1e6:.1f} MB free", self.directory)
    if self.before_next_save:
      self.before_next_save()
      self.before_next_save = None
    host = jax.device_get(state)
    digests = {"state": leaf_digests(host), "params": leaf_digests(params_of(host))}
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    digests=ocp.args.JsonSave(digests)))

  def latest_step(self):
    """The newest step on disk (not yet verified), or None."""
    return self.manager.latest_step()

  def wait_until_finished(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()

  def restore_latest(self, abstract_state):
    """-> (train state, step) of the newest step that reads and verifies, or (None, None)
    when there is no checkpoint. `abstract_state`: ShapeDtypeStructs with shardings.
    CheckpointMismatch when the saved state has another layout (nothing is moved)."""
    def restore(step):
      self._check_layout(step, abstract_state)
      state, saved = self._read(step, ocp.args.StandardRestore(abstract_state))
      return self._verified(state, saved and saved["state"])
    return self._first_good(restore)

  def restore_latest_partial(self, fresh_state):
    """Like restore_latest, for a run whose layout changed knowingly: every leaf of
    `fresh_state` (a placed train state) that the newest good checkpoint holds with the
    same shape and dtype is restored, the others keep their fresh values.

    -> (state, step, names of the leaves left fresh), or (None, None, []) when there is no
    checkpoint."""
    def restore(step):
      saved = {leaf_name(path): x for path, x in
               jax.tree_util.tree_leaves_with_path(self._restore_as_saved(step, "state"))}
      left_fresh = []
      def pick(path, fresh):
        x = saved.get(leaf_name(path))
        if x is None or (x.shape, x.dtype) != (fresh.shape, fresh.dtype):
          left_fresh.append(leaf_name(path))
          return fresh
        return jax.device_put(np.asarray(x), fresh.sharding)
      return jax.tree_util.tree_map_with_path(pick, fresh_state), left_fresh
    restored, step = self._first_good(restore)
    if step is None:
      return None, None, []
    state, left_fresh = restored
    return state, step, left_fresh

  def restore_latest_params(self):
    """-> (params, step) of the newest step whose parameters verify, on this process's first
    device whatever devices saved it (for evaluation)."""
    return self._first_good(lambda step: self._restore_as_saved(step, "params"))

  def _restore_as_saved(self, step, part):
    """The saved train state of `step` in its own layout, on this process's first device,
    verified as a whole ("state") or only its parameters ("params") -> that part."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            self.manager.item_metadata(step)["state"])
    state, saved = self._read(step, ocp.args.StandardRestore(abstract))
    tree = state if part == "state" else params_of(state)
    return self._verified(tree, saved and saved[part])

  def _check_layout(self, step, abstract_state):
    """CheckpointMismatch when `step`'s saved state has another layout than the run's."""
    differences = layout_differences(leaf_specs(self.manager.item_metadata(step)["state"]),
                                     leaf_specs(abstract_state))
    if differences:
      raise CheckpointMismatch(
          f"{self.directory}/{step}: the saved train state does not fit this run's ("
          f"{differences}): the model or a config key that shapes the state (such as root "
          "or trainable) changed. The checkpoints are left as they are; resume with the "
          "config they were written with, use a new workdir, or pass --allow_config_change "
          "to restore what both share and start the rest afresh")

  def _read(self, step, state_args):
    """-> (state, saved digests); digests None for a step saved before they existed."""
    if not os.path.isdir(os.path.join(self.directory, str(step), "digests")):
      logging.warning("checkpoint step %d in %s has no digests (saved by an older hierre_jax): "
                      "restored without verification", step, self.directory)
      restored = self.manager.restore(step, args=ocp.args.Composite(state=state_args))
      return restored["state"], None
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=state_args, digests=ocp.args.JsonRestore()))
    if not restored["digests"]:
      raise CheckpointError("its digests file is empty")
    return restored["state"], restored["digests"]

  @staticmethod
  def _verified(tree, want):
    """`tree` if its leaves hash to `want` (None: nothing to check), else CheckpointError."""
    if want is None:
      return tree
    got = leaf_digests(tree)
    want = {saved_leaf_name(k): v for k, v in want.items()}
    mismatched = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if mismatched:
      raise CheckpointError(f"{len(mismatched)} arrays differ from their saved digests, "
                            f"e.g. {mismatched[:3]}")
    return tree

  def quarantined_steps(self):
    """The steps an earlier restore moved to `<directory>_corrupt/`."""
    target = self.directory + "_corrupt"
    return sorted(int(n) for n in os.listdir(target) if n.isdigit()) if os.path.isdir(
        target) else []

  def _first_good(self, restore):
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps and self.quarantined_steps() and not self.read_only:
      raise CheckpointError(
          f"{self.directory}: no checkpoint, but {self.directory}_corrupt holds the steps "
          f"{self.quarantined_steps()} that failed verification before; this run would start "
          "over from step 0. Put a good copy of a step back into the checkpoints folder, use a "
          "new workdir, or remove the _corrupt folder to start over knowingly")
    bad, result = [], (None, None)
    with unraisable_errors_dropped():
      for step in steps:
        try:
          result = (restore(step), step)
          break
        except CheckpointMismatch:
          raise  # readable and intact: the run's own change, never moved aside
        except Exception as e:  # pylint: disable=broad-except
          logging.warning("checkpoint step %d in %s is unusable: %s", step, self.directory,
                          root_cause(e))
          bad.append(step)
    self._quarantine(bad)
    if steps and result[1] is None:
      raise CheckpointError(
          f"{self.directory}: none of the checkpoints {steps} could be read and verified "
          "(see the warnings above); to start from scratch, use a new workdir")
    if bad:
      logging.warning("restored the previous good checkpoint, step %s", result[1])
    return result

  def _quarantine(self, steps):
    """Moves unusable steps to `<directory>_corrupt/` (process 0) and reloads the step list."""
    if not steps or self.read_only:
      return
    sharding.barrier("checkpoints checked")
    if jax.process_index() == 0:
      target = self.directory + "_corrupt"
      os.makedirs(target, exist_ok=True)
      for step in steps:
        dst = os.path.join(target, str(step))
        if os.path.exists(dst):
          shutil.rmtree(dst)
        shutil.move(os.path.join(self.directory, str(step)), dst)
      logging.warning("moved the unusable checkpoint steps %s to %s", steps, target)
    sharding.barrier("checkpoints moved")
    self.manager.reload()
