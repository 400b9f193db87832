"""What the entry points share: flag parsing and errors in one readable line, quiet logs.

A user's mistake (a bad config value or key, a missing or malformed file, a full
disk, an unusable checkpoint) ends the program with `error: ...` naming the file,
row or key at fault and exit status 1; anything else keeps its traceback.
"""
import errno
import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from hierre_jax.common import errors

USER_ERRORS = (errors.UserError, FileNotFoundError, NotADirectoryError)


def define_train_flags(what):
  """--config (`what`: which config files) and --allow_config_change of a train entry point."""
  config_flags.DEFINE_config_file("config", None, f"Path to {what}.", lock_config=True)
  flags.DEFINE_bool("allow_config_change", False, "Resume a run whose stored config differs "
                    "in keys that change the computation (they are recorded).")


def define_image_features_flag():
  """--image_features_dir of the entry points that embed images (`loading.embedder`)."""
  flags.DEFINE_string("image_features_dir", None, "Keep image features on disk here, keyed by "
                      "image tower, preprocessing and arithmetic, so that later runs embed each "
                      "image once. Default: a train workdir's own store (its training embedded "
                      "the frozen tower's images there); none for other models. '': none.")


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


RESUME_ADVICE = "run the same command again (it resumes from the last checkpoint)"


def one_line(error, full_disk_advice=RESUME_ADVICE):
  """The one-line message of a user's mistake, or None for anything else; a full disk's
  ends with `full_disk_advice` (what running the command again does)."""
  where = disk_full(error)
  if where is not None:
    return (f"no space left on device{' writing ' + where if where else ''}: free some space "
            f"or choose an output location on a larger disk, then {full_disk_advice}")
  if isinstance(error, USER_ERRORS):
    return " ".join(str(error).split("\n")).strip()
  return None


def config_argument(argv, name):
  """The `--name=VALUE` or `--name VALUE` argument of `argv`, as the user typed it."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg
    if arg == f"--{name}" and i + 1 < len(argv):
      return f"--{name}={argv[i + 1]}"
  return f"--{name}"


def cannot_load(arg, error):
  """The one line for a config file that does not run: its error's last line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return (f"{arg}: cannot load the config file ({type(error).__name__}: "
          f"{lines[-1] if lines else ''})")


def load_config_files(argv):
  """Loads every ml_collections config flag now (config_flags defers a file's errors to its
  first use, as a multi-line traceback) -> one line naming the argument, or None."""
  for name, flag in flags.FLAGS.__flags.items():  # pylint: disable=protected-access
    if not flag.present or not hasattr(flag, "config_filename"):  # (absent: unparsed)
      continue
    arg = config_argument(argv, name)
    path = flag.config_filename
    if path and not os.path.exists(path.split(":", 1)[0]):
      return f"{arg}: no such config file"
    try:
      value = flag.value
    except Exception as e:  # pylint: disable=broad-except
      return cannot_load(arg, e)
    if value is not None and not isinstance(value, ml_collections.ConfigDict):
      return (f"{arg}: get_config() returned a {type(value).__name__}, not an "
              "ml_collections.ConfigDict")
  return None


def parse_flags(argv):
  """absl flag parsing; a bad flag, `--config.key` or config file gives one line naming the
  argument."""
  try:
    parsed = flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}; --helpshort or --helpfull lists the flags")
  except (AttributeError, KeyError) as e:
    # ml_collections: "'key'\nDid you mean ..." as the exception's argument, escaped once more.
    text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
    lines = text.strip().splitlines() or [""]
    name = lines[0].strip("\"' ")
    hint = lines[1].strip().rstrip("'?").replace("Did", "did") if len(lines) > 1 else ""
    hint = f" ({hint}?)" if hint else ""
    args = [a for a in argv[1:] if a.startswith("--config.") and name in a.split("=")[0]]
    sys.exit(f"error: {args[0] if args else name}: no such config key '{name}'{hint}; see "
             "the config file for the keys it defines")
  except Exception as e:  # pylint: disable=broad-except  (a config file that does not run)
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
      raise
    sys.exit(f"error: {cannot_load(config_argument(argv, 'config'), e)}")
  message = load_config_files(argv)
  if message:
    sys.exit(f"error: {message}")
  return parsed


def quiet_logs():
  """No orbax per-save INFO lines nor jax's 'Unable to initialize backend' lines."""
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in r.pathname)
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


def run(main, full_disk_advice=RESUME_ADVICE):
  """app.run(main) with one-line errors for user mistakes (exit status 1); a full disk's
  message ends with `full_disk_advice`."""
  def wrapped(argv):
    quiet_logs()
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except
      message = one_line(e, full_disk_advice)
      if message is None:
        raise
      sys.exit(f"error: {message}")
  app.run(wrapped, flags_parser=parse_flags)
