"""Where a command writes, checked before any work against what it reads and what is there.

No output may land on an input: an output folder that is, contains or lies inside a model
directory, a workdir or a data file or folder is refused (`check_apart`). An output folder
is written only when it is new, empty, or was written before by the same command for the
same thing (`claim`: a small owner file names it); another run's folder is refused, so
nothing of it is overwritten. Every message is one line naming both paths.
"""
import json
import os

from hierre_jax.common import errors

OWNER_FILE = "written_by.json"


def real(path):
  return os.path.realpath(os.path.expanduser(path))


def canonical(path):
  """What names a model or file however it is spelt: the real path of a local one, else the
  string (a hub id) without a trailing slash."""
  return real(path) if os.path.exists(path) else path.rstrip("/")


def within(path, folder):
  """Whether real `path` is `folder` or lies inside it."""
  return os.path.commonpath([path, folder]) == folder


def check_apart(outputs, inputs, allowed=()):
  """Refuses an output that is, lies inside or contains an input.

  outputs, inputs: (what, path) pairs ("--output_dir", "config.model", ...); empty paths and
  inputs not on disk (hub ids) are skipped. An output inside one of `allowed` (an input's own
  output folder, such as a train workdir's evaluations/) is accepted.
  """
  allowed = [real(a) for a in allowed]
  for out_name, out in outputs:
    if not out:
      continue
    o = real(out)
    if any(within(o, a) for a in allowed):
      continue
    for in_name, source in inputs:
      if not source or not os.path.exists(source):
        continue
      i = real(source)
      relation = ("is" if o == i else "lies inside" if within(o, i)
                  else "contains" if within(i, o) else None)
      if relation:
        raise errors.UserError(f"{out_name}={out} {relation} the input {in_name}={source}: "
                               "choose an output location apart from the inputs")


def owner_of(folder):
  """The owner record of a folder `claim` wrote into, None if it has none."""
  try:
    with open(os.path.join(folder, OWNER_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def claimable(folder, owner):
  """Whether `claim(folder, owner)` would write: new, empty, or already `owner`'s."""
  return (not os.path.exists(folder) or (os.path.isdir(folder) and not os.listdir(folder))
          or owner_of(folder) == owner)


def check_claimable(folder, owner, what):
  """UserError (one line) unless `folder` may be written for `owner` (see `claim`)."""
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise errors.UserError(f"{what}={folder} is a file, not a folder")
  if not claimable(folder, owner):
    found = owner_of(folder)
    holds = f"files written by {found}" if found else "files not written by this command"
    raise errors.UserError(f"{what}={folder} holds {holds}, not {owner}: choose a new or empty "
                           "folder (nothing was written)")


def claim(folder, owner, what):
  """Makes `folder` ours for `owner` (a JSON dict: the command and what it writes for),
  refusing one that holds anything else (`check_claimable`) -> folder."""
  check_claimable(folder, owner, what)
  os.makedirs(errors.require_writable_dir(folder, what), exist_ok=True)
  write_file(os.path.join(folder, OWNER_FILE), lambda f: json.dump(owner, f))
  return folder


def write_file(path, write):
  """write(f) into `path` (text) through a file beside it renamed over it -> path: a killed
  or failed write leaves the old file; an OSError names `path` (a full disk's names none)."""
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    with open(tmp, "w") as f:
      write(f)
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise OSError(e.errno, e.strerror, path) from e
  return path
