"""Pair accuracy in the training format: the learning curves of a scorer and the step chosen
on validation (`training`), and the study's diagnostics (benchmarks/dcsm_diagnostics.py).

For each pair of a set (an anchor image and its opposite) and each caption version, the
anchor image scores its own caption against its opposite's, and the opposite image the
reverse: 2 x VERSIONS two-way items per pair, right when the true caption scores strictly
higher (chance 50%).
"""
import numpy as np

from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import procedural
from hierre_jax.dcsm import scoring


def pair_items(pairs):
  """[procedural.Pair] -> the two-way `benchmarks.Item`s above, the true caption first."""
  return [benchmarks.Item(image, version if anchor else version[::-1])
          for pair in pairs for version in pair.captions
          for image, anchor in ((pair.image, True), (pair.opposite, False))]


def first_pairs(data_dir, split, count):
  """{dataset: the first `count` pairs of `split`} (all of a smaller set)."""
  return {name: pairs[:count] for name, pairs in procedural.read_pairs(data_dir,
                                                                       split).items()}


class PairAccuracy:
  """accuracy(params) -> {dataset: pair accuracy} of a scorer's CNN params on fixed pairs,
  the frozen features computed once: equal to `multiple_choice.evaluate` of a
  `scoring.DenseScorer` on `pair_items` (a test), without embedding anything again."""

  def __init__(self, scorer, pairs):
    """scorer: a `scoring.DenseScorer` (its params unused); pairs: {dataset: [Pair]}."""
    self.scorer, self.sets = scorer, {}
    for name, chosen in pairs.items():
      items = pair_items(chosen)
      captions = [c for item in items for c in item.captions]
      text_tokens, sources = scorer.captions(captions)
      n = len(items)
      self.sets[name] = (scorer.features.images([item.image for item in items]),
                         text_tokens.reshape(n, 2, *text_tokens.shape[1:]),
                         sources.reshape(n, 2, -1))

  def __call__(self, params):
    out = {}
    for name, (image_tokens, text_tokens, sources) in self.sets.items():
      scores = np.asarray(scoring.score_items(params, image_tokens, text_tokens, sources,
                                              self.scorer.table, self.scorer.options))
      out[name] = float(np.mean(scores[:, 0] > scores[:, 1]))
    return out
