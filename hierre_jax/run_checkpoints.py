"""Orbax checkpoints of a train run, verified when they are read back.

Every save writes, beside the train state, the SHA-256 digest of each array leaf
(computed from the host copy of the state that is being saved). A restore hashes
what it read and compares. A step that cannot be read or does not verify is
reported in one line, moved out of the way to `<checkpoints>_corrupt/<step>` (so that
orbax can write that step again) and the previous step is tried. A corrupt step
is never restored, and a run never falls back to step 0 without an error.
"""
import contextlib
import errno
import gc
import hashlib
import os
import shutil
import sys

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from hierre_jax import sharding


class CheckpointError(RuntimeError):
  """No checkpoint of a directory could be read and verified."""


def leaf_digests(tree):
  """{path: sha256 hex} of every array leaf of a (host or fully replicated) pytree."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    x = np.ascontiguousarray(np.asarray(leaf))
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
    out[jax.tree_util.keystr(path)] = h.hexdigest()
  return out


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
    when there is no checkpoint. `abstract_state`: ShapeDtypeStructs with shardings."""
    def restore(step):
      state, saved = self._read(step, ocp.args.StandardRestore(abstract_state))
      return self._verified(state, saved and saved["state"])
    return self._first_good(restore)

  def restore_latest_params(self):
    """-> (params, step) of the newest step whose parameters verify, on this process's first
    device whatever devices saved it (for evaluation)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    def restore(step):
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                              self.manager.item_metadata(step)["state"])
      state, saved = self._read(step, ocp.args.StandardRestore(abstract))
      return self._verified(params_of(state), saved and saved["params"])
    return self._first_good(restore)

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
    mismatched = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if mismatched:
      raise CheckpointError(f"{len(mismatched)} arrays differ from their saved digests, "
                            f"e.g. {mismatched[:3]}")
    return tree

  def _first_good(self, restore):
    steps = sorted(self.manager.all_steps(), reverse=True)
    bad, result = [], (None, None)
    with unraisable_errors_dropped():
      for step in steps:
        try:
          result = (restore(step), step)
          break
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
