"""Multiple-choice accuracy of any pair scorer: each item is one image with K candidate
captions, the prediction the caption of highest score.

A pair scorer has `score(images, captions) -> [N, K]` (N images as paths or PIL images,
N tuples of K captions). `GlobalCosine` scores with a model's single-vector cosine (any
family's `Embedder`); `hierre_jax.dcsm.scoring.DenseScorer` with DCSM.

Ties are reported apart: `accuracy` counts an item right only when the true caption scores
strictly above every other; `accuracy_ties_as_correct` counts a tie at the top as right (the
DCSM release's argmax does).
"""
import numpy as np
from PIL import Image
import tqdm

from hierre_jax.common import errors

from hierre_jax.data import images as image_data
from hierre_jax.data import indexing


class GlobalCosine:
  """The single-vector score of an `embedding.Embedder`'s image and caption features: its
  geometry's similarity (the cosine on the sphere, the Lorentzian inner product on MERU's
  hyperboloid)."""

  def __init__(self, embedder):
    self.embedder = embedder

  def score(self, images, captions):
    image_features = self.embedder.images(images)
    unique, rows = indexing.index_rows(captions)
    text_features, _ = self.embedder.texts(unique)
    similarity = np.asarray(self.embedder.geometry.similarity(image_features, text_features))
    return np.take_along_axis(similarity, np.asarray(rows), axis=1)


def item_image(item):
  """An item's image as the DCSM release reads its benchmarks, `Image.open(path).convert(
  "RGB")` (transparency dropped, where the families' own reading composites it onto white),
  cropped to its box (x, y, w, h) as PIL crops a float box (rounded): its path where that is
  the same image, else the PIL image."""
  if item.box is None and not image_data.has_transparency(item.image):
    return item.image
  try:
    with Image.open(item.image) as f:
      image = f.convert("RGB")
  except (OSError, SyntaxError, ValueError) as e:
    raise image_data.ImageError(f"{item.image}: cannot read this image ({e})") from e
  if item.box is None:
    return image
  x, y, w, h = item.box
  return image.crop((x, y, x + w, y + h))


def evaluate(scorer, items, rewrite=lambda caption: caption, chunk=256, desc=None):
  """Items (with `image`, `captions`, `answer`, `box`, `group`) -> {accuracy,
  accuracy_ties_as_correct, ties, items, k, chance}, and `by_group` (the same per group) when
  items name groups; `rewrite` maps each caption before scoring."""
  if not items:
    raise errors.UserError("no items to evaluate")
  scores = []
  for start in tqdm.trange(0, len(items), chunk, desc=desc, leave=False,
                           disable=len(items) <= chunk):
    batch = items[start:start + chunk]
    scores.append(np.asarray(scorer.score(
        [item_image(item) for item in batch],
        [tuple(rewrite(c) for c in item.captions) for item in batch]), np.float64))
  scores, answers = np.concatenate(scores), np.asarray([item.answer for item in items])
  result = accuracy(scores, answers)
  groups = np.asarray([getattr(item, "group", "") for item in items])
  if groups.any():
    result["by_group"] = {str(g): accuracy(scores[groups == g], answers[groups == g])
                          for g in np.unique(groups)}
  return result


def accuracy(scores, answers):
  """scores [N, K], answers [N] -> the accuracies with ties apart (see the module doc)."""
  n, k = scores.shape
  true = scores[np.arange(n), answers]
  others = np.where(np.arange(k)[None] == answers[:, None], -np.inf, scores)
  best_other = others.max(axis=1)
  right, tied = int((true > best_other).sum()), int((true == best_other).sum())
  return {"accuracy": right / n, "accuracy_ties_as_correct": (right + tied) / n,
          "ties": tied, "items": n, "k": k, "chance": 1 / k}
