"""Grounding supervision for contrastive training: caption words tied to the box of the image
that shows them, and the loss that puts each such word's similarity on the patches of its box.

A pairs CSV (`contrastive.read_pairs`) may carry a `regions` column:
"word:x0 y0 x1 y1;word:..." with the box as fractions of the image's width and height (0 at
the top left). Each word is a space-separated word of the row's caption and names one box;
an empty cell is a row without regions. `procedural.make_data` writes it for its shapes.
"""
import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors


def format_regions(regions):
  """[(word, (x0, y0, x1, y1))] -> the `regions` cell."""
  return ";".join(f"{w}:{' '.join(f'{v:.4f}' for v in box)}" for w, box in regions)


def parse_regions(cell, caption, where):
  """A `regions` cell of the row whose caption is `caption` -> [(word, box)]; DataError
  naming `where` (file and row) for a malformed region, a box outside [0, 1] or empty, a
  word not in the caption or named twice."""
  regions, words = [], caption.split(" ")
  for part in filter(None, cell.split(";")):
    word, _, box = part.partition(":")
    try:
      box = tuple(float(v) for v in box.split())
    except ValueError:
      box = ()
    if len(box) != 4 or not all(0 <= v <= 1 for v in box) or not (
        box[0] < box[2] and box[1] < box[3]):
      raise errors.DataError(f"{where}: region {part!r}: expected word:x0 y0 x1 y1, fractions "
                             "in [0, 1] with x0 < x1 and y0 < y1")
    if word not in words:
      raise errors.DataError(f"{where}: region word {word!r} is not a word of the caption "
                             f"{caption!r}")
    if word in (w for w, _ in regions):
      raise errors.DataError(f"{where}: region word {word!r} named twice")
    regions.append((word, box))
  return regions


def word_position(tokenizer, pool_index, caption, word, max_length, where):
  """-> the index of the last token of `caption`'s first `word` in its token ids (with the
  tokenizer's special tokens; `pool_index` the family's index of the end token)."""
  words = caption.split(" ")
  prefix = " ".join(words[:words.index(word) + 1])
  ids = tokenizer([caption], truncation=True, max_length=max_length)["input_ids"][0]
  # One token more than the model reads: a prefix that long is cut off in the caption.
  prefix_ids = tokenizer([prefix], truncation=True, max_length=max_length + 1)["input_ids"][0]
  at = int(pool_index(np.asarray([prefix_ids]))[0]) - 1
  if (at < 0 or len(prefix_ids) > max_length
      or list(ids[:at + 1]) != list(prefix_ids[:at + 1])):
    raise errors.DataError(f"{where}: region word {word!r}: the caption's tokens do not start "
                           "with those of the caption up to the word (or it is cut off at "
                           f"{max_length} tokens)")
  return at


def patch_masks(boxes, grid):
  """boxes [..., 4] (x0, y0, x1, y1 fractions) -> [..., grid * grid] bool: the patches of a
  grid x grid image, row-major as a ViT orders them, that overlap each box."""
  edges = jnp.arange(grid) / grid
  cols = (edges < boxes[..., 2:3]) & (edges + 1 / grid > boxes[..., 0:1])  # [..., grid]
  rows = (edges < boxes[..., 3:4]) & (edges + 1 / grid > boxes[..., 1:2])
  return (rows[..., :, None] & cols[..., None, :]).reshape(*boxes.shape[:-1], grid * grid)


def grounding_loss(patches, tokens, positions, boxes, valid, log_scale):
  """Unit patch features [B, R, P] (a row-major grid, no class token), unit text-token
  features [B, T, P], per row K regions: the token index of each word [B, K], its box
  [B, K, 4], whether it is one [B, K] -> the mean over regions of -log of the softmax mass,
  over the row's patches, of exp(log_scale) * <patch, word> on the patches that overlap the
  box (0 with no region)."""
  grid = int(round(patches.shape[1] ** 0.5))
  word = jnp.take_along_axis(tokens, positions[..., None], axis=1)  # [B, K, P]
  logits = jnp.exp(log_scale) * jnp.einsum("brp,bkp->bkr", patches, word)
  inside = patch_masks(boxes, grid)
  mass = (jax.nn.logsumexp(jnp.where(inside, logits, -jnp.inf), axis=-1)
          - jax.nn.logsumexp(logits, axis=-1))
  valid = valid.astype(logits.dtype)
  return -(mass * valid).sum() / jnp.maximum(valid.sum(), 1)
