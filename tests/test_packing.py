"""Sequence packing: where each text goes, and the packed train batch holds every text once."""
import numpy as np
import pytest

from hierre_jax.data import hierarcaps_csv
from hierre_jax.data import packing
from conftest import clip_batches


def unpack(packed):
  """-> per shard, per text: (its ids, its positions, the offset of its pooled token)."""
  s, r, length = packed.ids.shape
  out = []
  for shard in range(s):
    texts = {}
    for row in range(r):
      for col in range(length):
        seg = packed.segments[shard, row, col]
        if seg:
          texts.setdefault((row, seg), []).append(col)
    by_start = {row * length + cols[0]: (row, cols) for (row, _), cols in texts.items()}
    found = []
    for end in packed.ends[shard]:
      start = max(k for k in by_start if k <= end)
      row, cols = by_start[start]
      found.append((packed.ids[shard, row, cols], packed.positions[shard, row, cols],
                    end - start))
    assert len(by_start) == len(found)  # no text without an end, none twice
    out.append(found)
  return out


def test_first_fit_decreasing_by_hand():
  # Longest first: 6 -> row 0 (2 left); 5 -> row 1 (3 left); 4 -> row 2 (4 left);
  # 3 -> row 1 at 5; 2 -> row 0 at 6 (the first with room).
  assert packing.first_fit_decreasing([5, 3, 4, 2, 6], 8) == [
      (1, 0), (1, 5), (2, 0), (0, 6), (0, 0)]


def test_pack_places_every_text_once_with_its_own_positions():
  rng = np.random.default_rng(0)
  shards = [[(rng.integers(1, 100, n), n - 1) for n in rng.integers(2, 12, 9)]
            for _ in range(3)]
  packed = packing.pack(shards, 16, pad_id=0, rows_multiple=4)
  assert packed.ids.shape[0] == 3 and packed.ids.shape[1] % 4 == 0 and packed.ids.shape[2] == 16
  for texts, found in zip(shards, unpack(packed)):
    for (ids, end), (got_ids, positions, got_end) in zip(texts, found):
      np.testing.assert_array_equal(got_ids, ids)
      np.testing.assert_array_equal(positions, np.arange(len(ids)))
      assert got_end == end
  assert (packed.ids[packed.segments == 0] == 0).all()  # the rest is padding


def test_pack_errors():
  with pytest.raises(ValueError, match="same number of texts"):
    packing.pack([[(np.ones(3), 2)], []], 8, 0)
  with pytest.raises(ValueError, match="text of 9 tokens does not fit in packed rows of 8"):
    packing.pack([[(np.ones(9), 8)]], 8, 0)


def test_packed_batch_holds_the_rows_texts_in_order(tmp_path, tok):
  rows = [f'"a{i} => b {i} => c {"c " * i} => d {"d " * i}","e => f{i} => g => h",u{i}'
          for i in range(12)]
  path = tmp_path / "t.csv"
  path.write_text("\n".join(["positive,negative,image_url"] + rows) + "\n")
  batches = clip_batches(hierarcaps_csv.read_hierarchies(str(path)), tok, 4, 3)
  packed = batches.packed_batch(5, shards=2, length=24, with_root=True)
  assert packed.ends.shape == (2, 2 * 8 + 1)
  assert packed.ids.shape[1] < 2 * 8 + 1  # several texts share a row
  rows = batches.row_indices(5).reshape(2, 2)
  for part, found in zip(rows, unpack(packed)):
    want = [batches.ids[r, c, :batches.lengths[r, c]] for r in part for c in range(8)]
    want.append(np.array([49406, 49407]))  # the root: the empty string
    for ids, (got, _, end) in zip(want, found):
      np.testing.assert_array_equal(got, ids)
      assert got[end] == 49407
  padded = batches.packed_batch(5, shards=2, length=24)
  assert padded.ends.shape == (2, 16)
