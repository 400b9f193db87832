"""User errors, and the checks every entry point makes of the paths and values it is given.

A `UserError` is a mistake in what the user passed (a config value, a file, a folder, a
class list, a checkpoint): its message is one line naming the file, row, key or entry at
fault and what would be valid. The entry points (`cli.run`) print it as `error: ...`
and exit with status 1; anything else is a bug and keeps its traceback.
"""
import os
import uuid

import numpy as np


class UserError(ValueError):
  """A mistake in the user's input; the message is one line naming the thing at fault."""


class ConfigError(UserError):
  """A config value that cannot work, or a resumed run whose config changed."""


class DataError(UserError):
  """A malformed row; the message names the file and row."""


class NonFiniteError(UserError):
  """NaN or infinite values where numbers are needed (a diverged run, broken weights)."""


def require_file(path, what="file"):
  """Raises UserError unless `path` is an existing regular file."""
  if not os.path.exists(path):
    raise UserError(f"{path}: no such {what}")
  if not os.path.isfile(path):
    raise UserError(f"{path}: the {what} is not a regular file")
  return path


def require_writable_dir(path, what="output folder"):
  """Raises UserError unless `path` is a folder this process can create files in, or could be
  created as one; nothing is left behind (a probe file in the nearest existing folder is
  created and removed: permission bits alone say nothing for root or a read-only mount)."""
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "is a file" if existing == os.path.abspath(path) else f"is below the file {existing}"
    raise UserError(f"{path}: cannot be used as the {what}: it {where}")
  probe = os.path.join(existing, f".hierre_jax_write_probe_{uuid.uuid4().hex}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"{path}: cannot write the {what} in {existing} ({e.strerror})") from e
  return path


def require_finite(values, what):
  """Raises NonFiniteError naming `what` and how many of `values` ([N, ...]) are not finite."""
  values = np.asarray(values)
  bad = ~np.isfinite(values)
  if bad.any():
    rows = bad.reshape(len(values), -1).any(axis=1) if values.ndim else bad
    raise NonFiniteError(
        f"{what}: {int(rows.sum())} of {rows.size} hold NaN or infinite values: the model's "
        "weights are not finite (a diverged training run?); nothing was scored")
  return values
