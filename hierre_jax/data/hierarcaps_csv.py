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


from hierre_jax.common.errors import DataError

NUM_TIERS = 4
TIER_SEPARATOR = "=>"


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


