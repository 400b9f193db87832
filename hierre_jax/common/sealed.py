"""Files the library writes and later reads back (random checkpoints, image feature stores,
DCSM scorers and generated data), sealed with their SHA-256 digests.

`seal` writes a manifest beside the files: each file's digest and a record of what wrote
them (a config, a feature width). `verify` reads the manifest, re-digests every file it
lists and returns the record, or raises `DamagedError` naming the first file that is
missing, changed or damaged, so that such a file is never used. Train checkpoints carry
their own digests (`trainer.checkpointing`).
"""
import hashlib
import json
import os
import shutil

from hierre_jax.common import errors
from hierre_jax.common import locations

MANIFEST = "sealed.json"


class DamagedError(errors.DataError):
  """A sealed file that is missing, changed since it was sealed, or has no manifest."""


def file_digest(path):
  """SHA-256 hex digest of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def seal(folder, names, record=None, manifest=MANIFEST, names_as=None):
  """Writes folder/manifest: the digest of each of `names` (paths relative to folder; listed
  under `names_as[name]` where given: a file written beside its place, sealed for it) and
  `record` (JSON). Written beside it and renamed over it: never half a manifest."""
  names_as = names_as or {}
  body = {"files": {names_as.get(name, name): file_digest(os.path.join(folder, name))
                    for name in names},
          "record": record}
  locations.write_file(os.path.join(folder, manifest), lambda f: json.dump(body, f, indent=1))


def write_folder(out, write):
  """Writes the sealed folder `out` whole -> out: `write(tmp)` fills a folder beside it and
  returns the record; every file there is sealed, then the folder is renamed over `out`
  (an existing one replaced: the caller checks that it may be). A killed writer leaves no
  half-written folder in place. Never the current directory or one of its ancestors."""
  real = os.path.realpath(out)
  if os.path.commonpath([os.getcwd(), real]) == real:
    raise errors.UserError(f"{out}: is the current directory or holds it; write the folder "
                           "elsewhere")
  tmp = f"{real}.{os.getpid()}.tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  record = write(tmp)
  seal(tmp, sorted(os.path.relpath(os.path.join(d, n), tmp)
                   for d, _, names in os.walk(tmp) for n in names), record)
  if os.path.exists(out):
    shutil.rmtree(out)
  os.replace(tmp, out)
  return out


def unsealed_files(folder, manifest=MANIFEST):
  """Paths (relative to folder) of the files under `folder` that its manifest does not list,
  the manifest itself apart: what replacing the folder would delete that was not sealed."""
  with open(os.path.join(folder, manifest)) as f:
    listed = set(json.load(f)["files"])
  found = (os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder)
           for n in names)
  return sorted(p for p in found if p not in listed and p != manifest)


def verify(folder, manifest=MANIFEST):
  """-> the record sealed with the files of folder/manifest, once every file listed there
  has its sealed digest; else DamagedError naming the file at fault."""
  path = os.path.join(folder, manifest)
  try:
    with open(path) as f:
      body = json.load(f)
    files = dict(body["files"])
  except FileNotFoundError as e:
    raise DamagedError(f"{path}: no manifest (not sealed, or written by an older version)") from e
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DamagedError(f"{path}: unreadable manifest ({e})") from e
  for name, digest in files.items():
    file = os.path.join(folder, name)
    try:
      found = file_digest(file)
    except OSError as e:
      raise DamagedError(f"{file}: sealed in {manifest} but unreadable ({e.strerror})") from e
    if found != digest:
      raise DamagedError(f"{file}: changed or damaged since it was written (SHA-256 differs "
                         f"from {manifest})")
  return body.get("record")


def verify_enclosing(path, manifest=MANIFEST):
  """Verifies (`verify`) the nearest folder above the file `path` whose manifest lists it, so
  that a file read out of a sealed folder (a generated data set's CSV) is never used changed;
  a file no manifest lists is left to its reader -> that folder, or None."""
  file = os.path.realpath(path)
  folder = os.path.dirname(file)
  while True:
    if os.path.isfile(os.path.join(folder, manifest)):
      try:
        with open(os.path.join(folder, manifest)) as f:
          listed = os.path.relpath(file, folder) in json.load(f)["files"]
      except (OSError, ValueError, KeyError, TypeError):
        listed = True  # an unreadable manifest: `verify` names it
      if listed:
        verify(folder, manifest)
        return folder
    parent = os.path.dirname(folder)
    if parent == folder:
      return None
    folder = parent


def record_differences(stored, wanted, prefix=""):
  """'key: stored -> wanted' for each dotted key whose value differs between two JSON-like
  dicts (a key missing on one side reads None)."""
  out = []
  for key in sorted(set(stored) | set(wanted)):
    a, b = stored.get(key), wanted.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += record_differences(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out
