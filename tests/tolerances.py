"""Tolerances for comparing two float32 computations of one value that add in another
order (packed vs padded texts, grouped vs block batches, cached vs recomputed targets,
8 devices vs 1, two processes vs one), and the check that a deliberately wrong variant
lands far outside them.

Each run rounds every partial result to float32; along a chain of `terms` roundings of
values of size at most `scale`, each run errs by at most terms * (eps / 2) * scale to
first order (Higham, *Accuracy and Stability of Numerical Algorithms*, section 4.2), so two
orders differ by at most terms * eps * scale. The bound is a worst case: on any x86 CPU,
thread count or XLA fusion the observed gap is far inside it, and a test stays valid only
if a wrong computation lands far outside (`assert_far`).
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
WIDE_MARGIN = 10.0  # a wrong variant must miss by this many tolerances at least


def reordered_atol(terms, scale):
  """Absolute tolerance for two float32 orders of `terms` roundings of values <= `scale`."""
  return terms * EPS32 * scale


def tower_terms(hidden, intermediate, layers, tokens, projection):
  """Roundings along a transformer tower's longest accumulation chain: per layer the
  attention's dot products (hidden), its softmax-weighted sum (tokens) and the MLP
  (intermediate, then hidden), then the projection."""
  return layers * (2 * hidden + intermediate + tokens) + hidden + projection


def assert_reordered_close(actual, desired, terms, scale=None, why=""):
  """|actual - desired| <= reordered_atol(terms, scale), scale the largest |desired| when
  not given -> that tolerance."""
  desired = np.asarray(desired, np.float64)
  scale = float(np.abs(desired).max()) if scale is None else scale
  atol = reordered_atol(terms, scale)
  np.testing.assert_allclose(actual, desired, atol=atol, rtol=0, err_msg=why)
  return atol


def assert_far(wrong, desired, atol, what):
  """A deliberately wrong computation misses `desired` by WIDE_MARGIN tolerances or more:
  the tolerance is tight enough to catch the error `what` describes."""
  gap = float(np.abs(np.asarray(wrong, np.float64) - np.asarray(desired, np.float64)).max())
  assert gap > WIDE_MARGIN * atol, (
      f"{what}: off by {gap:.3g}, within {WIDE_MARGIN:g} x the tolerance {atol:.3g}")
