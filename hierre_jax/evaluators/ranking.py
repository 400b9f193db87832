"""The rank of a correct item among scored candidates, as a stable descending sort gives it."""
import numpy as np

from hierre_jax.geometry import sphere


def ranks_of_targets(scores, targets):
  """[Q, N] scores, [Q] target column -> [Q] 0-based rank of each target, ties broken by
  lower column index first (as a stable descending sort)."""
  target = scores[np.arange(len(scores)), targets][:, None]
  columns = np.arange(scores.shape[1])[None]
  return ((scores > target) | ((scores == target) & (columns < targets[:, None]))).sum(1)


def similarity_ranks(queries, candidates, targets, chunk, geometry=sphere.SPHERE):
  """[Q, D] queries, [N, D] candidates, [Q] target candidate -> [Q] rank of each target by
  `geometry.similarity` (ranks_of_targets), `chunk` queries at a time so memory stays
  bounded."""
  return np.concatenate([ranks_of_targets(geometry.similarity(queries[s:s + chunk], candidates),
                                          targets[s:s + chunk])
                         for s in range(0, len(queries), chunk)])
