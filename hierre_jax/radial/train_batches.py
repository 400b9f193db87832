"""Deterministic, tokenised RE training batches of HierarCaps rows (8 texts per row: 4
positive tiers, 4 negative), padded per tier group or packed several to a row."""
import jax.numpy as jnp
import numpy as np

from hierre_jax.data import packing
from hierre_jax.common.errors import DataError
from hierre_jax.data import text
from hierre_jax.data.hierarcaps_csv import Hierarchies, NUM_TIERS


def group_columns(length_groups):
  """Tier groups (0-based tiers) -> the row columns (p_t at t, n_t at 4 + t) of each group."""
  tiers = sorted(t for group in length_groups for t in group)
  if tiers != list(range(NUM_TIERS)):
    raise ValueError(f"length_groups {length_groups} must cover tiers 0..3 exactly once")
  return [tuple(group) + tuple(NUM_TIERS + t for t in group) for group in length_groups]


class TrainBatches:
  """Tokenised training rows; `batch(step)` is a pure function of (seed, step).

  Each epoch is a fresh permutation drawn from (seed, epoch); the last partial
  batch of an epoch is left out so that every step has the same shape. A
  resumed run asking for step k gets exactly the rows an uninterrupted run got.

  Texts are padded per group of tiers (`length_groups`): general tiers are a few
  tokens long and specific ones tens, so padding each group to its own longest
  text saves about a third of the transformer work over one padded block; or packed
  several to a row (`packed_batch`), which leaves almost no padding.
  """

  def __init__(self, data: Hierarchies, tokenizer, batch_size, seed, pool_index, max_length,
               length_multiple=8, length_groups=((0, 1, 2, 3),)):
    """`pool_index`: [..., T] ids -> the index of the token each text is pooled at (the
    model family's rule, `Family.pool_index`). Texts are truncated and padded to
    `max_length` tokens (the family's)."""
    if data.negatives is None:
      raise DataError("training needs the positive,negative,image_url format")
    if batch_size > len(data):
      raise DataError(f"batch_size {batch_size} exceeds the {len(data)} training rows")
    texts = [p + n for p, n in zip(data.positives, data.negatives)]
    # Distinct texts (first-appearance order) and each row's 8 indices among them.
    self.texts = list(dict.fromkeys(t for row in texts for t in row))
    where = {t: i for i, t in enumerate(self.texts)}
    self.text_index = np.array([[where[t] for t in row] for row in texts], np.int32)
    # Distinct image names and each row's index among them (the contrastive ablation).
    self.images = list(dict.fromkeys(data.images))
    where = {name: i for i, name in enumerate(self.images)}
    self.image_index = np.array([where[name] for name in data.images], np.int32)
    flat = text.tokenize(tokenizer, [t for row in texts for t in row], max_length)
    self.lengths = np.array([len(ids) for ids in flat], np.int32).reshape(-1, 2 * NUM_TIERS)
    self.ids = text.pad(flat, max_length, tokenizer.pad_token_id)
    self.ids = self.ids.reshape(len(data), 2 * NUM_TIERS, max_length)
    self.pool_index, self.max_length = pool_index, max_length
    self.ends = np.asarray(self.pool_index(self.ids), np.int32)
    self.root = np.asarray(text.tokenize(tokenizer, [""], max_length)[0], np.int32)
    self.pad_id = tokenizer.pad_token_id
    self.batch_size, self.seed, self.length_multiple = batch_size, seed, length_multiple
    self.columns = group_columns(length_groups)
    self.steps_per_epoch = len(data) // batch_size
    self.rows_left_out_per_epoch = len(data) % batch_size

  def row_indices(self, step):
    epoch, offset = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.ids))
    return order[offset * self.batch_size:(offset + 1) * self.batch_size]

  def batch(self, step):
    """-> tuple, one [batch_size, texts of the group, L_g] int32 array per length group.

    Columns of a group: its positives then its negatives; L_g is the group's longest
    text rounded up to `length_multiple`. `merge_groups` restores p1..p4, n1..n4 order.
    """
    rows = self.row_indices(step)
    ids, lengths = self.ids[rows], self.lengths[rows]
    out = []
    for cols in self.columns:
      length = text.bucket_length(int(lengths[:, cols].max()), self.length_multiple,
                                  self.max_length)
      out.append(ids[:, cols, :length])
    return tuple(out)

  def packed_batch(self, step, shards, length, rows_multiple=1, with_root=False):
    """-> `packing.Packed` of the step's texts, the batch's rows split in order into
    `shards` equal parts (one per device), each shard's texts row by row (p1..p4,
    n1..n4) and, `with_root`, the empty string last; rows of `length` tokens, their
    count rounded up to `rows_multiple`."""
    rows = self.row_indices(step).reshape(shards, -1)
    root = [(self.root, int(self.pool_index(self.root)))]
    texts = [[(self.ids[r, c, :self.lengths[r, c]], self.ends[r, c])
              for r in part for c in range(2 * NUM_TIERS)] + root * with_root for part in rows]
    return packing.pack(texts, length, self.pad_id, rows_multiple)

  def text_indices(self, step):
    """-> [batch_size, 8] int32 index of the rows' texts (p1..p4, n1..n4) in `texts`."""
    return self.text_index[self.row_indices(step)]

  def contrastive_batch(self, step, tiers=(0, 1, 2, 3)):
    """One positive text per row, drawn from `tiers` (0-based) afresh at every step, for
    CLIP's contrastive objective -> ([B, L] ids, L the longest rounded up to
    `length_multiple`; [B, 1] their index in `texts`; [B] the row's index in `images`)."""
    rows = self.row_indices(step)
    drawn = np.random.default_rng([self.seed, step, 1]).choice(np.asarray(tiers), len(rows))
    length = text.bucket_length(int(self.lengths[rows, drawn].max()), self.length_multiple,
                                self.max_length)
    return (self.ids[rows, drawn, :length], self.text_index[rows, drawn][:, None],
            self.image_index[rows])


def merge_groups(per_group, length_groups):
  """Per-group [B, n_g, ...] arrays (as `TrainBatches.batch` orders them) -> [B, 8, ...]."""
  order = [c for cols in group_columns(length_groups) for c in cols]
  return jnp.concatenate(per_group, axis=1)[:, np.argsort(order)]
