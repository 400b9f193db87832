"""Several texts per row of tokens (sequence packing), so that the text tower does no
work on padding.

HierarCaps texts are 3 to ~30 tokens long: padded to their longest, about half of the
train step's transformer work is padding. Packed, each row of `length` tokens holds
several texts one after another; every token gets its position within its own text
and the id of its text (segment), and attention is restricted to earlier tokens of
the same text (`models.Attention`), so each text's features are those it has alone.

Rows are split in `shards` (one per device of the mesh): each shard packs only its
own texts, so that picking the texts' end tokens never crosses devices.
"""
from typing import NamedTuple

import numpy as np


class Packed(NamedTuple):
  """Texts packed into rows, per shard (S shards, R rows of L tokens, N texts per shard)."""
  ids: np.ndarray  # [S, R, L] int32 token ids (padding: the pad id)
  positions: np.ndarray  # [S, R, L] int32 position of each token within its text
  segments: np.ndarray  # [S, R, L] int32 1 + index of the token's text in its row; 0 padding
  ends: np.ndarray  # [S, N] int32 flat index (row * L + column) of each text's pooled token


def first_fit_decreasing(sizes, capacity):
  """-> (bin, offset) of each item: the longest items first, each into the first bin
  with room (a new bin when none has)."""
  free, place = [], [None] * len(sizes)
  for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
    b = next((b for b, room in enumerate(free) if room >= sizes[i]), len(free))
    if b == len(free):
      free.append(capacity)
    place[i] = (b, capacity - free[b])
    free[b] -= sizes[i]
  return place


def pack(shards, length, pad_id, rows_multiple=1):
  """Texts of each shard -> `Packed`.

  shards: [S] lists of (ids [n] int, end) with `end` the index in ids of the token the
    tower pools (its end-of-text token); every shard holds the same number of texts.
  length: tokens per row (>= the longest text); rows_multiple: the row count R (the
    most any shard needs) is rounded up to a multiple of it (fewer distinct shapes).
  """
  counts = {len(texts) for texts in shards}
  if len(counts) != 1:
    raise ValueError(f"every shard must hold the same number of texts, got {sorted(counts)}")
  longest = max(len(ids) for texts in shards for ids, _ in texts)
  if longest > length:
    raise ValueError(f"a text of {longest} tokens does not fit in packed rows of {length}")
  places = [first_fit_decreasing([len(ids) for ids, _ in texts], length) for texts in shards]
  rows = max(b for place in places for b, _ in place) + 1
  rows = -(-rows // rows_multiple) * rows_multiple
  shape = (len(shards), rows, length)
  out = Packed(np.full(shape, pad_id, np.int32), np.zeros(shape, np.int32),
               np.zeros(shape, np.int32), np.zeros((len(shards), counts.pop()), np.int32))
  for s, (texts, place) in enumerate(zip(shards, places)):
    in_row = np.zeros(rows, np.int32)
    for i, ((ids, end), (row, start)) in enumerate(zip(texts, place)):
      cols = slice(start, start + len(ids))
      in_row[row] += 1
      out.ids[s, row, cols] = ids
      out.positions[s, row, cols] = np.arange(len(ids))
      out.segments[s, row, cols] = in_row[row]
      out.ends[s, i] = row * length + start + end
  return out


def pad_rows(packed, rows, pad_id):
  """`Packed` with `rows` rows per shard (>= its own), the added rows all padding."""
  extra = rows - packed.ids.shape[1]
  if not extra:
    return packed
  grow = lambda x, value: np.pad(x, ((0, 0), (0, extra), (0, 0)), constant_values=value)
  return Packed(grow(packed.ids, pad_id), grow(packed.positions, 0),
                grow(packed.segments, 0), packed.ends)
