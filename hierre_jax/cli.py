"""What the entry points share: flag parsing and errors in one readable line, quiet logs.

A user's mistake (a bad config value or key, a missing or malformed file, a full
disk, an unusable checkpoint) ends the program with `error: ...` naming the file,
row or key at fault and exit status 1; anything else keeps its traceback.
"""
import errno
import logging as std_logging
import re
import sys

from absl import app
from absl import flags
from absl import logging

from hierre_jax import image_preprocessing
from hierre_jax import input_pipeline
from hierre_jax import run_checkpoints
from hierre_jax import train_config
from hierre_jax.hierarchy import ontology

USER_ERRORS = (train_config.ConfigError, input_pipeline.DataError,
               run_checkpoints.CheckpointError, image_preprocessing.ImageError,
               ontology.OntologyError, FileNotFoundError, NotADirectoryError)


def disk_full(error):
  """-> 'PATH (detail)' of a 'No space left on device' error anywhere in `error`'s chain
  (orbax and TensorStore wrap it in other types), '' when no path is known, None if the
  error is not a full disk."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return f"{error.filename or ''} ({error.strerror})"
    if "No space left on device" in str(error):
      match = re.search(r'(?:Failed writing: |local file )"([^"]+)"', str(error))
      return match.group(1) if match else ""
    error = error.__cause__ or error.__context__
  return None


def one_line(error):
  """The one-line message of a user's mistake, or None for anything else."""
  where = disk_full(error)
  if where is not None:
    return (f"no space left on device{' writing ' + where if where else ''}: free some space "
            "or choose a workdir on a larger disk, then run the same command again (it "
            "resumes from the last checkpoint)")
  if isinstance(error, USER_ERRORS):
    return str(error).strip().replace("\n", " ")
  return None


def parse_flags(argv):
  """absl flag parsing; an unknown `--config.key` gives one line naming the argument."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError) as e:
    name = str(e).strip("\"' ")
    args = [a for a in argv[1:] if a.startswith("--config.") and name in a.split("=")[0]]
    sys.exit(f"error: {args[0] if args else name}: no such config key '{name}' "
             "(see the config file for the keys it defines)")


def quiet_logs():
  """No orbax per-save INFO lines nor jax's 'Unable to initialize backend' lines."""
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in r.pathname)
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


def run(main):
  """app.run(main) with one-line errors for user mistakes (exit status 1)."""
  def wrapped(argv):
    quiet_logs()
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except
      message = one_line(e)
      if message is None:
        raise
      sys.exit(f"error: {message}")
  app.run(wrapped, flags_parser=parse_flags)
