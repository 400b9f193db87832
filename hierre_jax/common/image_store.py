"""A frozen image tower's features kept on disk, so that each image is embedded once across
runs, resumptions and later evaluations (RE trains the text tower only).

A store is a folder with one file per key, `<key>.npz`: the key names the image tower's
parameters, the preprocessing and the arithmetic (see `embedding.image_store_key`), and the
file holds the features [N, P] float32 and, as JSON, each image's real path, size and
modification time. An image whose file changed since it was embedded (size or time) is
embedded again. The file is replaced whole (written beside it, then renamed) and sealed
(`sealed`: `<key>.sealed.json` holds its digest, which covers the paths it holds, and the
feature width). A file that fails its seal, cannot be read, or holds features of another
width or not finite is never used: its images are embedded again, with one line saying so.
A folder that cannot be written keeps the features in memory only, said before any work.
"""
import json
import os
import zipfile
import zlib

from absl import logging
import numpy as np

from hierre_jax.common import errors
from hierre_jax.common import sealed


# What reading a damaged .npz raises (its seal catches most damage first).
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error)


def _can_write(folder):
  """Whether files can be created in `folder` (`errors.require_writable_dir`); says so in one
  line if not."""
  try:
    errors.require_writable_dir(folder, "image feature store")
    return True
  except errors.UserError as e:
    logging.warning("image feature store %s cannot be written (%s): features are kept in memory "
                    "for this run only", folder, e)
    return False


def _identity(path):
  """-> (real path, [size, mtime in ns]) of an image file."""
  stat = os.stat(path)
  return os.path.realpath(path), [stat.st_size, stat.st_mtime_ns]


class ImageFeatureStore:
  """{image path: [P] features} read from and written to `folder/<key>.npz`; the
  `Embedder(image_features=)` mapping (`in`, `[]`, `update`).

  The file is read once, when the store is made; `update` rewrites it when `writable` (in a
  multi-process run only process 0 writes, and every process keeps the same features).
  """

  def __init__(self, folder, key, width, writable=True):
    self.path = os.path.join(folder, f"{key}.npz")
    self.manifest = f"{key}.sealed.json"
    self.width = width
    self.writable = writable and _can_write(folder)
    self._index = {}  # real path -> (row, [size, mtime])
    self._features = None  # [N, P]
    if os.path.exists(self.path):
      try:
        self._read()
      except (sealed.DamagedError, *READ_ERRORS) as e:
        logging.warning("%s: not used, its images are embedded again: %s", self.path,
                        str(e).splitlines()[0])

  def _read(self):
    """Reads the sealed file; raises DamagedError (or a reading error) when it is not usable."""
    record = sealed.verify(os.path.dirname(self.path), self.manifest)
    with np.load(self.path, allow_pickle=False) as f:
      features, index = f["features"], json.loads(str(f["index"]))
    rows = {path: (row, stamp) for row, (path, stamp) in enumerate(index)}
    if (features.ndim != 2 or len(rows) != len(features) or features.shape[1] != self.width
        or record != {"width": self.width, "images": len(rows)}):
      raise sealed.DamagedError(f"{features.shape} features for {len(rows)} images, sealed as "
                                f"{record}; the model's width is {self.width}")
    if not np.isfinite(features).all():
      raise sealed.DamagedError("features that are not finite")
    self._features, self._index = features.astype(np.float32), rows

  def __len__(self):
    return len(self._index)

  def __contains__(self, path):
    real, stamp = _identity(path)
    return real in self._index and self._index[real][1] == stamp

  def __getitem__(self, path):
    if path not in self:
      raise KeyError(path)
    return self._features[self._index[os.path.realpath(path)][0]]

  def update(self, pairs):
    """Adds (path, [P] features) pairs (a changed file's row replaced) and rewrites the file."""
    pairs = list(pairs)
    if not pairs:
      return
    new = np.stack([np.asarray(f, np.float32) for _, f in pairs])
    start = 0 if self._features is None else len(self._features)
    self._features = new if self._features is None else np.concatenate([self._features, new])
    for i, (path, _) in enumerate(pairs):
      real, stamp = _identity(path)
      self._index[real] = (start + i, stamp)
    if self.writable:
      self._write()

  def _write(self):
    """Only the rows the index points at; written beside the file, then renamed over it."""
    paths = list(self._index)
    rows = [self._index[p][0] for p in paths]
    self._features = self._features[rows]
    self._index = {p: (i, self._index[p][1]) for i, p in enumerate(paths)}
    index = json.dumps([[p, self._index[p][1]] for p in paths])
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    tmp = f"{self.path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, features=self._features, index=np.array(index))
    os.replace(tmp, self.path)
    sealed.seal(os.path.dirname(self.path), [os.path.basename(self.path)],
                {"width": self.width, "images": len(paths)}, self.manifest)
