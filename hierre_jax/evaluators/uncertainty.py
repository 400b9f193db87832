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
import scipy.stats

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


def _value(statistic, arrays):
  """The statistic of [B, n] (or [n]) arrays along the last axis -> [B] (or scalar)."""
  if statistic == "mean":
    return np.nanmean(arrays[0], axis=-1)
  if statistic == "weighted_mean":
    return (arrays[0] * arrays[1]).sum(-1) / arrays[1].sum(-1)
  a, b = (scipy.stats.rankdata(x, axis=-1) for x in arrays)  # Spearman: Pearson of ranks
  a = a - a.mean(-1, keepdims=True)
  b = b - b.mean(-1, keepdims=True)
  return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def value(items):
  """The metric itself (the statistic over all items)."""
  return float(_value(items.statistic, [np.asarray(a, np.float64) for a in items.arrays]))


def resample_indices(n, seed=SEED, resamples=RESAMPLES):
  """[resamples, n] item indices drawn with replacement: a function of (n, seed) only."""
  return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _resampled(items, index, chunk=250):
  """The statistic on each resample of `index` [B, n] -> [B]."""
  arrays = [np.asarray(a, np.float64) for a in items.arrays]
  return np.concatenate([_value(items.statistic, [a[index[s:s + chunk]] for a in arrays])
                         for s in range(0, len(index), chunk)])


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
