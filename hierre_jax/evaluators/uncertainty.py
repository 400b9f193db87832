"""How sure a number is: seeded percentile-bootstrap intervals over an evaluation's own items,
and paired differences between models scored on the same items.

An evaluator states each metric's items as an `Items`: the per-item arrays and the statistic
that turns them into the metric ("mean" of one array: tau_d over rows, P and R over images,
recall over queries, accuracy over images; "weighted_mean" of values and weights: BREEDS'
mean over its datasets; "spearman" of two arrays: HyperLex's rho over word pairs). Every resample draws item indices from RESAMPLES x n with the seed alone, so two
models with the same n are resampled identically: the paired bootstrap.
"""
import dataclasses

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
STATISTICS = ("mean", "weighted_mean", "spearman")


@dataclasses.dataclass(frozen=True)
class Items:
  """A metric's per-item arrays ([n] each) and its statistic (one of STATISTICS)."""
  statistic: str
  arrays: tuple

  def __post_init__(self):
    if self.statistic not in STATISTICS:
      raise ValueError(f"statistic {self.statistic!r}: one of {STATISTICS}")
    sizes = {len(a) for a in self.arrays}
    if len(sizes) != 1:
      raise ValueError(f"item arrays of different lengths {sorted(sizes)}")

  @property
  def n(self):
    return len(self.arrays[0])

  def to_json(self):
    return {"statistic": self.statistic, "arrays": [np.asarray(a, float).tolist()
                                                    for a in self.arrays]}

  @classmethod
  def from_json(cls, d):
    return cls(d["statistic"], tuple(np.asarray(a, np.float64) for a in d["arrays"]))


def average_ranks(levels, index, num_levels):
  """Average ranks (1-based, ties sharing their mean rank, as scipy's rankdata) of each
  resample: levels [n] int codes of the values' order (equal values, equal codes), index
  [B, n] -> [B, n] ranks of levels[index] within each row; O(B (n + levels)), no sort."""
  codes = levels[index]
  b = len(index)
  counts = np.bincount((codes + num_levels * np.arange(b)[:, None]).ravel(),
                       minlength=b * num_levels).reshape(b, num_levels)
  mean_rank = np.cumsum(counts, axis=1) - counts + (counts + 1) / 2.0
  return np.take_along_axis(mean_rank, codes, axis=1)


def _resampled(items, index, chunk=250):
  """The statistic on each resample of `index` [B, n] -> [B]."""
  arrays = [np.asarray(a, np.float64) for a in items.arrays]
  out = []
  for s in range(0, len(index), chunk):
    rows = index[s:s + chunk]
    if items.statistic == "mean":
      out.append(np.nanmean(arrays[0][rows], axis=-1))
    elif items.statistic == "weighted_mean":
      out.append((arrays[0][rows] * arrays[1][rows]).sum(-1) / arrays[1][rows].sum(-1))
    else:  # Spearman: Pearson of each resample's own average ranks
      a, b = (average_ranks(levels, rows, levels.max() + 1) for levels in
              (np.unique(x, return_inverse=True)[1] for x in arrays))
      a -= a.mean(-1, keepdims=True)
      b -= b.mean(-1, keepdims=True)
      out.append((a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1)))
  return np.concatenate(out)


def value(items):
  """The metric itself (the statistic over all items)."""
  return float(_resampled(items, np.arange(items.n)[None])[0])


def resample_indices(n, seed=SEED, resamples=RESAMPLES):
  """[resamples, n] item indices drawn with replacement: a function of (n, seed) only."""
  return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(items, seed=SEED, resamples=RESAMPLES, level=LEVEL):
  """[lo, hi]: the percentile-bootstrap interval of the metric over its items."""
  draws = _resampled(items, resample_indices(items.n, seed, resamples))
  tail = 100 * (1 - level) / 2
  return [float(np.nanpercentile(draws, tail)), float(np.nanpercentile(draws, 100 - tail))]


def paired_difference(items, baseline, seed=SEED, resamples=RESAMPLES, level=LEVEL):
  """(difference, [lo, hi]) of items' metric minus baseline's, both computed on the same
  resampled items (paired bootstrap); ValueError when they are not the same items' count."""
  if items.n != baseline.n or items.statistic != baseline.statistic:
    raise ValueError(f"not the same items: {items.n} {items.statistic} vs {baseline.n} "
                     f"{baseline.statistic}")
  index = resample_indices(items.n, seed, resamples)
  draws = _resampled(items, index) - _resampled(baseline, index)
  tail = 100 * (1 - level) / 2
  return value(items) - value(baseline), [float(np.nanpercentile(draws, tail)),
                                          float(np.nanpercentile(draws, 100 - tail))]


def hits(values):
  """Items of a share: the mean of [n] bools (or 0/1 values)."""
  return Items("mean", (np.asarray(values, np.float64),))


def with_intervals(metrics, seed=SEED):
  """An evaluator's metrics holding "items" ({key: Items}) -> (the metrics without them,
  each item metric's 95% interval added as "<key>_ci95": [lo, hi]; the items)."""
  metrics = dict(metrics)
  items = metrics.pop("items", {})
  for key, values in items.items():
    metrics[f"{key}_ci95"] = interval(values, seed)
  return metrics, items
