"""A toy evaluator, the runnable example of docs/guide/9_extending.md: the mean radius (the
distance from the root, in the model's geometry) of the texts of a file, one per line.

Registered by its import (`registry.register`); the tests import it through
HIERRE_JAX_PLUGINS (conftest), so that `--evals=meanradius`, its `--meanradius_texts` flag,
its column and its item count reach every entry point.
"""
import numpy as np

from hierre_jax.common import errors
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import uncertainty


class MeanRadius:
  """The mean radius of the texts of `path` (UTF-8, one text per line, blank lines skipped)."""

  name = "meanradius"

  def __init__(self, path):
    errors.require_file(path, "meanradius texts")
    with open(path, encoding="utf-8") as f:
      self.texts = [line.strip() for line in f if line.strip()]
    if not self.texts:
      raise errors.UserError(f"{path}: no texts")

  def run(self, embedder):
    """-> mean_radius and num_texts, with the radii as items (an interval over texts)."""
    feats, root = embedder.texts(self.texts)
    radii = np.asarray(embedder.geometry.radius(feats, root), np.float64)
    return {"mean_radius": float(radii.mean()), "num_texts": len(radii),
            "items": {"mean_radius": uncertainty.Items("mean", (radii,))}}


registry.register(registry.Entry(
    "meanradius", files={"meanradius_texts": ("meanradius", "texts.txt")},  # under --data_dir
    build=lambda paths, options: MeanRadius(paths["meanradius_texts"]),
    columns=(("mean radius", "meanradius/mean_radius"),),
    item_count=lambda result, key: result.get("meanradius/num_texts")))
