"""The on-disk image feature store: features read back equal, a changed file or another
tower or arithmetic embedded again, a damaged store named."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import shared_file
from hierre_jax import embedding
from hierre_jax import errors
from hierre_jax import models
from test_evaluate import direct_image_features
from test_train import count_embedded_images


def test_image_features_are_kept_on_disk_per_tower_and_file(tiny_clip_dir, tmp_path,
                                                             monkeypatch):
  source = os.path.dirname(shared_file("test_images/COCO_val2014_000000000139.jpg"))
  paths = []
  for name in sorted(os.listdir(source))[:5]:
    shutil.copy(os.path.join(source, name), tmp_path / name)
    paths.append(str(tmp_path / name))
  store = str(tmp_path / "store")
  open_embedder = lambda **kw: embedding.Embedder.from_path(
      tiny_clip_dir, image_batch_size=4, image_features_dir=store, **kw)
  embedded = count_embedded_images(monkeypatch)
  first = open_embedder().images(paths[:3])
  assert len(embedded) == 3 and len(os.listdir(store)) == 1  # no temporary file left
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
  assert len(embedded) == 7 and len(os.listdir(store)) == 2
  _, config, params, model_dir = models.load(tiny_clip_dir)
  pre = models.family_of_config(config).preprocessing(model_dir, config)
  other = {**params, "visual_projection": {"kernel": params["visual_projection"]["kernel"] * 2}}
  key = embedding.image_store_key(config, params, pre, "float32")
  assert embedding.image_store_key(config, other, pre, "float32") != key
  assert embedding.image_store_key(config, {**params, "text_projection": other[
      "visual_projection"]}, pre, "float32") == key  # the text tower is not part of it
  # A damaged store is named, not read.
  with open(os.path.join(store, f"{key}.npz"), "wb") as f:
    f.write(b"not a store")
  with pytest.raises(errors.DataError, match=rf"{key}\.npz: unreadable image feature store"):
    open_embedder()
