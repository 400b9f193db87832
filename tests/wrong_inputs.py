"""Deliberately wrong train-step inputs: each is a bug that a reordering tolerance must
not hide (`tolerances.assert_far`)."""
import jax.numpy as jnp
import numpy as np


def positions_not_restarted(packed):
  """Packed texts numbered by their column in the row, not from 0 in each text."""
  columns = np.broadcast_to(np.arange(packed.ids.shape[-1], dtype=np.int32), packed.ids.shape)
  return packed._replace(positions=np.where(packed.segments > 0, columns, 0))


def attends_to_neighbour(packed):
  """One segment per row: every text attends to the texts packed beside it."""
  return packed._replace(segments=(packed.segments > 0).astype(np.int32))


def mask_off_by_one(packed):
  """Each text's first token counted in the text before it (the mask shifted by one)."""
  first = (packed.positions == 0) & (packed.segments > 1)
  return packed._replace(segments=np.where(first, packed.segments - 1, packed.segments))


PACKED = (positions_not_restarted, attends_to_neighbour, mask_off_by_one)


def groups_misordered(groups):
  """Padded length groups with the first group's first two columns swapped (texts merged
  back into the wrong tiers)."""
  first = groups[0].copy()
  first[:, [0, 1]] = first[:, [1, 0]]
  return (first,) + tuple(groups[1:])


def pullback_targets_shifted(tables):
  """Cached pull-back targets of the next text instead of each text's own."""
  return dict(tables, pullback=jnp.roll(tables["pullback"], 1, axis=0))
