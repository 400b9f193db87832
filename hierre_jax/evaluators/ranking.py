"""The rank of a correct item among scored candidates, as a stable descending sort gives it."""
import numpy as np


def ranks_of_targets(scores, targets):
  """[Q, N] scores, [Q] target column -> [Q] 0-based rank of each target, ties broken by
  lower column index first (as a stable descending sort)."""
  target = scores[np.arange(len(scores)), targets][:, None]
  columns = np.arange(scores.shape[1])[None]
  return ((scores > target) | ((scores == target) & (columns < targets[:, None]))).sum(1)
