"""The on-disk image feature store: features read back equal, a changed file or another
tower or arithmetic embedded again, a damaged store named."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import shared_file
from hierre_jax import embedding
from hierre_jax import loading
from hierre_jax.common import image_store
from hierre_jax import models
from references import direct_image_features
from tiny_training import count_embedded_images


def test_image_features_are_kept_on_disk_per_tower_and_file(tiny_clip_dir, tmp_path,
                                                             monkeypatch):
  source = os.path.dirname(shared_file("test_images/COCO_val2014_000000000139.jpg"))
  paths = []
  for name in sorted(os.listdir(source))[:5]:
    shutil.copy(os.path.join(source, name), tmp_path / name)
    paths.append(str(tmp_path / name))
  store = str(tmp_path / "store")
  open_embedder = lambda **kw: loading.embedder(
      tiny_clip_dir, image_batch_size=4, image_features_dir=store, **kw)
  embedded = count_embedded_images(monkeypatch)
  first = open_embedder().images(paths[:3])
  key = os.listdir(store)[0].split(".")[0]  # the store and its seal; no temporary file left
  assert sorted(os.listdir(store)) == [f"{key}.npz", f"{key}.sealed.json"]
  # A later process reads the three back and embeds only the two it has not seen.
  later = open_embedder().images(paths)
  assert len(embedded) == 5
  np.testing.assert_array_equal(later[:3], first)
  np.testing.assert_allclose(later, direct_image_features(tiny_clip_dir, paths), atol=1e-5)
  # A file changed since is embedded again, not read stale.
  Image.new("RGB", (64, 48), (200, 30, 30)).save(paths[0], "JPEG")
  changed = open_embedder().images(paths[:2])
  assert len(embedded) == 6
  np.testing.assert_array_equal(changed[1], first[1])
  np.testing.assert_allclose(changed[0], direct_image_features(tiny_clip_dir, paths[:1])[0],
                             atol=1e-5)
  assert np.abs(changed[0] - first[0]).max() > 1e-3
  # Other arithmetic, or another image tower, has its own file.
  open_embedder(compute_dtype="bfloat16").images(paths[:1])
  assert len(embedded) == 7 and len(os.listdir(store)) == 4
  model = models.load(tiny_clip_dir)
  params = model.params
  other = {**params, "visual_projection": {"kernel": params["visual_projection"]["kernel"] * 2}}
  assert embedding.image_store_key(model, "float32") == key
  assert embedding.image_store_key(model.with_params(other), "float32") != key
  assert embedding.image_store_key(model.with_params({**params, "text_projection": other[
      "visual_projection"]}), "float32") == key  # the text tower is not part of it



def damage(path, how):
  """Damages the store file at `path` the way a disk, a copy or a hand might."""
  data = open(path, "rb").read()
  if how in ("truncated", "bit_flipped", "empty"):
    data = {"truncated": data[:len(data) // 2], "empty": b"",
            "bit_flipped": data[:200] + bytes([data[200] ^ 1]) + data[201:]}[how]
    open(path, "wb").write(data)
    return
  with np.load(path) as f:
    features, index = f["features"], f["index"]
  if how == "nan_row":
    features[1] = np.nan
  elif how == "rows_permuted":
    features = features[::-1]
  else:  # "other_width"
    features = np.concatenate([features, features], axis=1)
  with open(path, "wb") as f:
    np.savez(f, features=features, index=index)


@pytest.mark.parametrize("how", ["truncated", "bit_flipped", "empty", "nan_row", "rows_permuted",
                                 "other_width"])
def test_a_damaged_store_is_never_used(tiny_clip_dir, tmp_path, monkeypatch, how):
  paths = [shared_file(f"test_images/{n}") for n in sorted(os.listdir(
      os.path.dirname(shared_file("hierarcaps_test.csv")) + "/test_images"))[:3]]
  store = str(tmp_path / "store")
  open_embedder = lambda: loading.embedder(tiny_clip_dir, image_batch_size=4,
                                           image_features_dir=store)
  first = open_embedder().images(paths)
  npz, = [os.path.join(store, n) for n in os.listdir(store) if n.endswith(".npz")]
  damage(npz, how)
  embedded = count_embedded_images(monkeypatch)
  warnings = []
  monkeypatch.setattr(image_store.logging, "warning", lambda *a: warnings.append(a[0] % a[1:]))
  again = open_embedder().images(paths)
  assert len(embedded) == 3, how  # all embedded again, nothing read from the damaged file
  np.testing.assert_array_equal(again, first)
  assert len(warnings) == 1 and warnings[0].startswith(f"{npz}: not used, its images are "
                                                       "embedded again"), warnings
  open_embedder().images(paths)  # rewritten whole and sealed: read back, none embedded
  assert len(embedded) == 3


def test_an_unwritable_store_keeps_features_in_memory_and_says_so(tiny_clip_dir, tmp_path,
                                                                  monkeypatch):
  paths = [shared_file("test_images/COCO_val2014_000000000139.jpg")]
  warnings = []
  monkeypatch.setattr(image_store.logging, "warning", lambda *a: warnings.append(a[0] % a[1:]))
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o555)
  for folder in (a_file, read_only):
    if folder == read_only and os.access(read_only, os.W_OK):
      continue  # root writes anywhere: the case is covered by a_file
    embedder = loading.embedder(tiny_clip_dir, image_features_dir=str(folder))
    np.testing.assert_allclose(embedder.images(paths), direct_image_features(tiny_clip_dir, paths),
                               atol=1e-5)
    assert warnings.pop().startswith(f"image feature store {folder} cannot be written"), folder
  assert a_file.read_text() == "" and not os.listdir(read_only)
