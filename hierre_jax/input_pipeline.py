"""HierarCaps CSV files and deterministic, tokenised training batches.

Formats (tiers joined by ' => ', general to specific):
  train / expanded: positive,negative,image_url   (4 + 4 texts per row)
  test:             id,captions,image_url         (4 texts per row)
"""
import csv
import dataclasses
import gzip
import os
import re
import zlib

import jax.numpy as jnp
import numpy as np

from hierre_jax import errors
from hierre_jax import models
from hierre_jax import packing
from hierre_jax import tokenizer as tokenizer_lib

NUM_TIERS = 4
TIER_SEPARATOR = "=>"


class DataError(errors.UserError):
  """A malformed row; the message names the file and row."""


@dataclasses.dataclass
class Hierarchies:
  """Rows of a HierarCaps file. `negatives` is None for the test format."""
  positives: list  # [N][4] str
  negatives: list | None  # [N][4] str
  images: list  # [N] image file names (last path component of image_url)
  skipped: list = dataclasses.field(default_factory=list)  # [(row number, reason)]

  def __len__(self):
    return len(self.positives)

  @property
  def num_skipped(self):
    return len(self.skipped)


def open_text(path):
  """Text mode, a UTF-8 BOM dropped; undecodable bytes kept as surrogates so that the row
  holding them can be named (`undecodable`)."""
  kwargs = dict(encoding="utf-8-sig", errors="surrogateescape", newline="")
  return gzip.open(path, "rt", **kwargs) if path.endswith(".gz") else open(path, **kwargs)


SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")


def undecodable(text):
  """The first byte of `text` that was not valid UTF-8 (a surrogate escape), or None."""
  match = SURROGATE_ESCAPE.search(text)
  return ord(match.group()) - 0xDC00 if match else None


def split_tiers(cell, where):
  """'a => b => c => d' -> ['a', 'b', 'c', 'd'], or DataError naming `where`."""
  tiers = [t.strip() for t in (cell or "").split(TIER_SEPARATOR)]
  if len(tiers) != NUM_TIERS:
    raise DataError(f"{where}: expected {NUM_TIERS} tiers separated by '{TIER_SEPARATOR}', "
                    f"got {len(tiers)}: {(cell or '')[:100]!r}")
  empty = [i + 1 for i, t in enumerate(tiers) if not t]
  if empty:
    raise DataError(f"{where}: tier {empty[0]} of {NUM_TIERS} is empty: {cell[:100]!r}")
  return tiers


def check_row(row, fieldnames, text_columns, where):
  """-> the row's tiers per text column, or DataError naming `where` and the fault."""
  if None in row or any(row.get(c) is None for c in text_columns + ("image_url",)):
    raise DataError(f"{where}: expected {len(fieldnames)} columns {fieldnames}, got a "
                    "different number")
  for column, cell in row.items():
    byte = undecodable(cell)
    if byte is not None:
      raise DataError(f"{where}, column {column!r}: not valid UTF-8 (byte 0x{byte:02x})")
  tiers = [split_tiers(row[c], f"{where}, column {c!r}") for c in text_columns]
  if not row["image_url"].strip():
    raise DataError(f"{where}: empty image_url")
  return tiers


def read_hierarchies(path, skip_bad_rows=False):
  """Reads a train/expanded (positive,negative,image_url) or test (id,captions,image_url) file.

  A malformed row (wrong columns or tiers, bytes that are not UTF-8) raises DataError
  naming file and row, or with `skip_bad_rows` is skipped and listed in `skipped`. A
  truncated or corrupt .gz file always raises.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such HierarCaps file")
  row_number = 0
  try:
    with open_text(path) as f:
      reader = csv.DictReader(f)
      columns = set(reader.fieldnames or ())
      if {"positive", "negative", "image_url"} <= columns:
        text_columns = ("positive", "negative")
      elif {"captions", "image_url"} <= columns:
        text_columns = ("captions",)
      else:
        raise DataError(f"{path}: header {reader.fieldnames} has neither the train columns "
                        "positive,negative,image_url nor the test columns id,captions,image_url")
      out = Hierarchies([], [] if len(text_columns) == 2 else None, [])
      for row_number, row in enumerate(reader, start=1):
        where = f"{path}: row {row_number} (line {reader.line_num})"
        try:
          tiers = check_row(row, reader.fieldnames, text_columns, where)
        except DataError as e:
          if not skip_bad_rows:
            raise
          out.skipped.append((row_number, str(e)[len(path) + 2:]))
          continue
        out.positives.append(tiers[0])
        if out.negatives is not None:
          out.negatives.append(tiers[1])
        out.images.append(row["image_url"].strip().rsplit("/", 1)[-1])
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise DataError(f"{path}: the compressed file is truncated or corrupt after row "
                    f"{row_number} ({type(e).__name__}: {e})") from e
  except csv.Error as e:
    raise DataError(f"{path}: row {row_number + 1}: {e}") from e
  if not out.positives:
    raise DataError(f"{path}: no usable rows")
  return out


def image_paths(data: Hierarchies, images_dir, source):
  """-> the path of every row's image under `images_dir`; DataError naming the first missing
  image (and its row of `source`) and how many distinct images are missing."""
  missing = {}
  for row, name in enumerate(data.images, start=1):
    if name not in missing and not os.path.exists(os.path.join(images_dir, name)):
      missing[name] = row
  if missing:
    name, row = next(iter(missing.items()))
    raise DataError(f"{images_dir}: {len(missing)} of the {len(set(data.images))} images of "
                    f"{source} are missing; the first is {name} (row {row} of the rows read)")
  return [os.path.join(images_dir, name) for name in data.images]


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

  def __init__(self, data: Hierarchies, tokenizer, batch_size, seed, length_multiple=8,
               length_groups=((0, 1, 2, 3),), eos_token_id=None):
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
    flat = tokenizer_lib.tokenize(tokenizer, [t for row in texts for t in row])
    self.lengths = np.array([len(ids) for ids in flat], np.int32).reshape(-1, 2 * NUM_TIERS)
    self.ids = tokenizer_lib.pad(flat, tokenizer_lib.MAX_LENGTH, tokenizer.pad_token_id)
    self.ids = self.ids.reshape(len(data), 2 * NUM_TIERS, tokenizer_lib.MAX_LENGTH)
    # The token each text is pooled at, by the text tower's rule (`eos_token_id` of the
    # model's config; the tokenizer's by default).
    self.eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    self.ends = np.asarray(models.end_of_text_position(self.ids, self.eos_token_id), np.int32)
    self.root = np.asarray(tokenizer_lib.tokenize(tokenizer, [""])[0], np.int32)
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
      length = tokenizer_lib.bucket_length(int(lengths[:, cols].max()), self.length_multiple)
      out.append(ids[:, cols, :length])
    return tuple(out)

  def packed_batch(self, step, shards, length, rows_multiple=1, with_root=False):
    """-> `packing.Packed` of the step's texts, the batch's rows split in order into
    `shards` equal parts (one per device), each shard's texts row by row (p1..p4,
    n1..n4) and, `with_root`, the empty string last; rows of `length` tokens, their
    count rounded up to `rows_multiple`."""
    rows = self.row_indices(step).reshape(shards, -1)
    root = [(self.root, int(models.end_of_text_position(self.root, self.eos_token_id)))]
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
    length = tokenizer_lib.bucket_length(int(self.lengths[rows, drawn].max()),
                                         self.length_multiple)
    return (self.ids[rows, drawn, :length], self.text_index[rows, drawn][:, None],
            self.image_index[rows])


def merge_groups(per_group, length_groups):
  """Per-group [B, n_g, ...] arrays (as `TrainBatches.batch` orders them) -> [B, 8, ...]."""
  order = [c for cols in group_columns(length_groups) for c in cols]
  return jnp.concatenate(per_group, axis=1)[:, np.argsort(order)]
