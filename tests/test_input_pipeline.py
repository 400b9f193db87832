"""HierarCaps reading: formats, errors naming file and row, deterministic batches."""
import gzip

import numpy as np
import pytest

from conftest import clip_batches, shared_file
from hierre_jax.common import errors
from hierre_jax.data import hierarcaps_csv
from hierre_jax.radial import train_batches

GOOD = ("animal => dog => a dog on grass => A dog running on green grass.",
        "plant => cat => a cat on grass => A cat sleeping on green grass.")


def write(path, lines):
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wt") as f:
    f.write("\n".join(lines) + "\n")
  return str(path)


def test_reads_train_format_gz(tmp_path):
  path = write(tmp_path / "t.csv.gz", ["positive,negative,image_url",
                                       f'"{GOOD[0]}","{GOOD[1]}",http://x/COCO_1.jpg'])
  data = hierarcaps_csv.read_hierarchies(path)
  assert data.positives == [["animal", "dog", "a dog on grass", "A dog running on green grass."]]
  assert data.negatives[0][1] == "cat" and data.images == ["COCO_1.jpg"]


def test_wrong_tier_count_names_file_and_row(tmp_path):
  lines = ["positive,negative,image_url", f'"{GOOD[0]}","{GOOD[1]}",u1',
           f'"animal => dog => a dog","{GOOD[1]}",u2']
  path = write(tmp_path / "bad.csv", lines)
  with pytest.raises(errors.DataError,
                     match=r"bad.csv: row 2 \(line 3\), column 'positive': expected 4 .* got 3"):
    hierarcaps_csv.read_hierarchies(path)
  data = hierarcaps_csv.read_hierarchies(path, skip_bad_rows=True)
  assert len(data) == 1 and data.num_skipped == 1


def test_missing_column_and_bad_header(tmp_path):
  path = write(tmp_path / "short.csv", ["positive,negative,image_url", f'"{GOOD[0]}"'])
  with pytest.raises(errors.DataError, match="short.csv: row 1 .*columns"):
    hierarcaps_csv.read_hierarchies(path)
  path = write(tmp_path / "hdr.csv", ["a,b", "1,2"])
  with pytest.raises(errors.DataError, match="hdr.csv: header"):
    hierarcaps_csv.read_hierarchies(path)


def test_real_test_set_format():
  data = hierarcaps_csv.read_hierarchies(shared_file("hierarcaps_test.csv"))
  assert len(data) == 1000 and data.negatives is None
  assert data.positives[1] == ["bird", "blue bird", "blue bird sitting on top of branch",
                               "A blue bird sitting on the top of a branch with autumn leaves"]
  assert data.images[0] == "COCO_val2014_000000301718.jpg"


def test_batches_are_deterministic_and_cover_each_epoch(tmp_path, tok):
  rows = [f'"a{i} => b{i} => c {i} c => d {i} d {"x " * i}","e => f => g => h",u{i}'
          for i in range(10)]
  data = hierarcaps_csv.read_hierarchies(write(tmp_path / "t.csv", ["positive,negative,image_url"]
                                               + rows))
  b = clip_batches(data, tok, 3, 7)
  assert b.steps_per_epoch == 3 and b.rows_left_out_per_epoch == 1
  epoch0 = np.concatenate([b.row_indices(s) for s in range(3)])
  assert len(set(epoch0)) == 9
  assert not np.array_equal(epoch0, np.concatenate([b.row_indices(s) for s in range(3, 6)]))
  again = clip_batches(data, tok, 3, 7)
  for step in range(7):
    (x,) = b.batch(step)
    np.testing.assert_array_equal(x, again.batch(step)[0])
    assert x.shape[:2] == (3, 8) and x.shape[2] % 8 == 0
    assert np.all(x[:, :, 0] == 49406) and np.all((x == 49407).any(-1))
  rows0 = b.row_indices(0)
  decoded = [tok.decode(ids, skip_special_tokens=True).strip() for ids in b.batch(0)[0][:, 0]]
  assert decoded == [f"a {i}" for i in rows0]  # CLIP BPE splits letters from digits


def test_length_groups_pad_each_group_to_its_own_longest_text(tmp_path, tok):
  rows = [f'"a => b => {"long text " * (i + 3)} => {"longer text " * (i + 6)}",'
          f'"c => d => {"x " * (i + 1)} => y",u{i}' for i in range(6)]
  data = hierarcaps_csv.read_hierarchies(write(tmp_path / "g.csv", ["positive,negative,image_url"]
                                               + rows))
  single = clip_batches(data, tok, 4, 1)
  grouped = clip_batches(data, tok, 4, 1, length_multiple=1, length_groups=((0, 1), (2, 3)))
  short, long = grouped.batch(0)
  assert short.shape[:2] == (4, 4) and long.shape[:2] == (4, 4)
  assert short.shape[2] == 3 and long.shape[2] > 10  # "a"/"b"/"c"/"d" are 3 tokens
  # Merged back (padding to a common length) it is the single-block batch.
  length = single.batch(0)[0].shape[2]
  padded = [np.pad(g, ((0, 0), (0, 0), (0, length - g.shape[2])), constant_values=49407)
            for g in (short, long)]
  np.testing.assert_array_equal(train_batches.merge_groups(padded, ((0, 1), (2, 3))),
                                single.batch(0)[0])
  with pytest.raises(ValueError, match="cover tiers"):
    train_batches.group_columns(((0, 1), (1, 2, 3)))


def test_undecodable_bytes_name_file_and_row_and_can_be_skipped(tmp_path):
  path = tmp_path / "latin1.csv"
  path.write_bytes(("positive,negative,image_url\n"
                    f'"{GOOD[0]}","{GOOD[1]}",u1\n').encode()
                   + f'"{GOOD[0]}","{GOOD[1]}",caf'.encode() + b"\xe9.jpg\n"
                   + f'"{GOOD[1]}","{GOOD[0]}",u3\n'.encode())
  with pytest.raises(errors.DataError,
                     match=r"latin1.csv: row 2 \(line 3\), column 'image_url': not valid UTF-8 "
                           r"\(byte 0xe9\)"):
    hierarcaps_csv.read_hierarchies(str(path))
  data = hierarcaps_csv.read_hierarchies(str(path), skip_bad_rows=True)
  assert data.images == ["u1", "u3"]
  assert data.skipped == [(2, "row 2 (line 3), column 'image_url': not valid UTF-8 (byte 0xe9)")]


def test_truncated_gz_names_the_file_even_when_skipping_rows(tmp_path):
  path = write(tmp_path / "t.csv.gz", ["positive,negative,image_url"]
               + [f'"{GOOD[0]}","{GOOD[1]}",u{i}' for i in range(2000)])
  raw = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(raw[:len(raw) // 2])
  for skip in (False, True):
    with pytest.raises(errors.DataError, match=r"t.csv.gz: the compressed file is "
                       r"truncated or corrupt after row \d+ \(EOFError"):
      hierarcaps_csv.read_hierarchies(path, skip_bad_rows=skip)


def test_bom_header_and_empty_tier_message(tmp_path):
  path = tmp_path / "bom.csv"
  path.write_bytes(b"\xef\xbb\xbf" + "\n".join([
      "positive,negative,image_url", f'"{GOOD[0]}","{GOOD[1]}",u1',
      f'"animal =>  => a dog on grass => A dog.","{GOOD[1]}",u2']).encode())
  with pytest.raises(errors.DataError,
                     match=r"bom.csv: row 2 \(line 3\), column 'positive': tier 2 of 4 is empty"):
    hierarcaps_csv.read_hierarchies(str(path))
  data = hierarcaps_csv.read_hierarchies(str(path), skip_bad_rows=True)
  assert data.positives == [GOOD[0].split(" => ")] and data.skipped[0][0] == 2
