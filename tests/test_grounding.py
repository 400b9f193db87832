"""Grounding supervision (hierre_jax.grounding): the regions format, the patches a box
covers, the loss against a loop in float64, word positions in the token ids, and the
regions the procedural generator writes against the pixels it drew."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

import tolerances
from hierre_jax.common import errors
from hierre_jax import grounding
from hierre_jax.dcsm import drawing
from hierre_jax.dcsm import procedural


def test_regions_round_trip_and_bad_cells_name_the_row():
  regions = [("red", (0.0, 0.25, 0.5, 1.0)), ("circle", (0.1, 0.2, 0.3, 0.4))]
  cell = grounding.format_regions(regions)
  assert cell == "red:0.0000 0.2500 0.5000 1.0000;circle:0.1000 0.2000 0.3000 0.4000"
  assert grounding.parse_regions(cell, "a red circle", "f.csv: row 2") == regions
  assert grounding.parse_regions("", "a red circle", "f.csv: row 2") == []
  for bad, message in [("red:0 0 1", "region 'red:0 0 1': expected word:x0 y0 x1 y1"),
                       ("red:0 0 1 1.5", "expected word:x0 y0 x1 y1"),
                       ("red:0.5 0 0.5 1", "with x0 < x1"),
                       ("red:a b c d", "expected word:x0 y0 x1 y1"),
                       ("blue:0 0 1 1", "region word 'blue' is not a word of the caption"),
                       ("red:0 0 1 1;red:0 0 .5 .5", "region word 'red' named twice")]:
    with pytest.raises(errors.DataError, match=f"^f.csv: row 7: .*{message}"):
      grounding.parse_regions(bad, "a red circle", "f.csv: row 7")


def test_patch_masks_are_the_patches_that_overlap_the_box():
  rng = np.random.default_rng(0)
  grid = 5
  for _ in range(50):
    x0, x1 = np.sort(rng.uniform(0, 1, 2))
    y0, y1 = np.sort(rng.uniform(0, 1, 2))
    want = np.zeros((grid, grid), bool)
    for row in range(grid):
      for col in range(grid):  # patch [col/g, (col+1)/g) x [row/g, (row+1)/g)
        want[row, col] = (col / grid < x1 and (col + 1) / grid > x0
                          and row / grid < y1 and (row + 1) / grid > y0)
    got = np.asarray(grounding.patch_masks(np.float32([x0, y0, x1, y1]), grid))
    np.testing.assert_array_equal(got.reshape(grid, grid), want)
  # a box inside one patch still covers that patch; the whole image covers all
  assert np.asarray(grounding.patch_masks(np.float32([0.41, 0.61, 0.42, 0.62]), grid)).sum() == 1
  assert np.asarray(grounding.patch_masks(np.float32([0, 0, 1, 1]), grid)).all()


def test_grounding_loss_equals_the_softmax_mass_written_with_loops():
  """Per region: -log of the softmax (over the row's patches, logits exp(s) <patch, word>)
  mass on the patches of its box; the mean over real regions, padding left out."""
  rng = np.random.default_rng(1)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  grid = 4
  patches, tokens = unit(rng.normal(size=(2, grid * grid, 6))), unit(rng.normal(size=(2, 7, 6)))
  positions = np.array([[3, 5, 0], [1, 0, 0]], np.int32)
  boxes = np.float32([[[0, 0, .5, .5], [.6, .1, .9, .9], [0, 0, 1, 1]],
                      [[.3, .3, .7, .7], [0, 0, 1, 1], [0, 0, 1, 1]]])
  valid = np.array([[True, True, False], [True, False, False]])
  scale = np.exp(1.5)
  want = []
  for b in range(2):
    for k in range(3):
      if not valid[b, k]:
        continue
      logits = scale * patches[b] @ tokens[b, positions[b, k]]
      p = np.exp(logits - logits.max())
      p /= p.sum()
      inside = np.asarray(grounding.patch_masks(boxes[b, k], grid))
      want.append(-np.log(p[inside].sum()))
  want = np.mean(want)
  got = grounding.grounding_loss(patches.astype(np.float32), tokens.astype(np.float32),
                                 positions, boxes, valid, 1.5)
  # dots of 6, log-sum-exps of 16, a mean of 3
  atol = tolerances.assert_reordered_close(got, want, terms=6 + 2 * 16 + 3, scale=scale)
  wrong = grounding.grounding_loss(patches.astype(np.float32), tokens.astype(np.float32),
                                   positions, boxes, np.ones_like(valid), 1.5)
  tolerances.assert_far(wrong, want, atol, "padding regions counted")
  shifted = grounding.grounding_loss(patches.astype(np.float32), tokens.astype(np.float32),
                                     positions + 1, boxes, valid, 1.5)
  tolerances.assert_far(shifted, want, atol, "the next token taken for the word")
  assert float(grounding.grounding_loss(patches, tokens, positions, boxes,
                                        np.zeros_like(valid), 1.5)) == 0.0


def test_word_position_is_the_words_last_token(tiny_clip_dir):
  from hierre_jax import models
  model = models.load(tiny_clip_dir)
  caption = "A picture of a red circle and a blue square"
  ids = model.tokenizer([caption])["input_ids"][0]
  where = "f.csv: row 2"
  for word, index in [("A", 1), ("red", 5), ("circle", 6), ("square", 10)]:
    at = grounding.word_position(model.tokenizer, model.pool_index, caption, word,
                                 model.max_length, where)
    assert at == index
    assert ids[at] == model.tokenizer([word])["input_ids"][0][1]  # one BPE token each
  with pytest.raises(errors.DataError, match="f.csv: row 2: region word 'square': .* cut off "
                     "at 6 tokens"):
    grounding.word_position(model.tokenizer, model.pool_index, caption, "square", 6, where)


def test_generator_regions_are_the_boxes_it_drew(tmp_path):
  """Every region of every captions.csv row: a word of the caption naming one object of
  the image (shape, colour, small / big), whose box holds every pixel of that object's
  colour; every shape the caption names and the image shows has its region."""
  data = procedural.make_data(str(tmp_path / "d"), seed=3, size=64, train_pairs=8,
                              test_items=2)
  rows = list(csv.DictReader(open(os.path.join(data, "train", "captions.csv"))))
  assert len(rows) == 3 * 8 * 2 * 2
  by_kind = {}
  for i, row in enumerate(rows, start=2):
    regions = dict(grounding.parse_regions(row["regions"], row["caption"], f"row {i}"))
    pixels = np.asarray(Image.open(os.path.join(data, "train", row["image"])).convert("RGB"))
    words = row["caption"].split(" ")
    kind = row["image"].split("/")[0]
    by_kind[kind] = by_kind.get(kind, 0) + len(regions)
    for word, (x0, y0, x1, y1) in regions.items():
      if word in drawing.COLOURS:
        ys, xs = np.nonzero((pixels == drawing.COLOURS[word]).all(-1))
        assert len(xs), (row, word)
        assert (xs >= x0 * 64 - 1).all() and (xs <= x1 * 64 + 1).all(), (row, word)
        assert (ys >= y0 * 64 - 1).all() and (ys <= y1 * 64 + 1).all(), (row, word)
    if kind != "negation":  # both named shapes are drawn
      assert {w for w in words if w in procedural.SHAPES} <= set(regions), row
    else:  # o1 is drawn, o2 (named after the negation) is not
      o1, o2 = words[4], words[-1]
      assert o1 in regions and o2 not in regions, row
  assert by_kind["binding"] >= 4 * 2 * 8 * 2  # shape and colour / size of both objects
