"""Diagnostics of the offline DCSM study (docs/dcsm.md) for one seed of
`launch/dcsm_shapes.sh`:

- hard-negative pairs in the training format (`dcsm.validation`): accuracy of the global
  cosine and of DCSM on the first 100 pairs of each training set and of the validation sets;
- localisation: whether the backbone's patch tokens point at the shape a word names. One
  shape drawn in a known cell of the 3 x 3 grid, caption "A picture of a {shape}": the mean
  cosine between the shape's word token and the patches inside its cell vs elsewhere;
- negation picks: on `procedural_negation` (image: o1 and a third shape, no o2), how often
  each scorer picks each kind of caption: the true "o1 {and not|but no|without} o2", the
  swapped "o2 ... o1", "o2" alone, "o1 and o2" (a scorer that only checks the first-named
  object is in the image splits its picks between the first and the last); on the control
  `procedural_negation_present` (image: o1 and o2): the true "o1 and o2", "o1 not o2",
  "o2 not o1", an absent shape.

  python -m benchmarks.dcsm_diagnostics --seed 0 [--variant tokens|grounded]
"""
import argparse
import json
import re

import numpy as np

from hierre_jax import loading
from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import drawing
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import procedural
from hierre_jax.dcsm import scoring
from hierre_jax.dcsm import validation
from hierre_jax.evaluators import multiple_choice


def hard_negative_pairs(data, scorers, pairs_per_set=100):
  """Pair accuracy in the training format (`dcsm.validation`) of each scorer on the first
  `pairs_per_set` pairs of each training and validation set."""
  out = {}
  for split in ("train", "val"):
    for name, pairs in validation.first_pairs(data, split, pairs_per_set).items():
      items = validation.pair_items(pairs)
      for label, scorer in scorers.items():
        out[f"{split}/{name}/{label}"] = multiple_choice.evaluate(scorer, items)["accuracy"]
  return out


def localisation(features, images=80, seed=0):
  """-> (mean cosine of the word with the patches of its shape's cell, elsewhere, share of
  images where inside > elsewhere)."""
  rng = np.random.default_rng(seed)
  canvas = drawing.Canvas(features.model.config.vision.image_size, rng)
  grid = features.model.config.vision.image_size // features.model.config.vision.patch_size
  scenes, captions, cells = [], [], []
  for k in range(images):
    shape, colour = procedural.SHAPES[k % 8], list(drawing.COLOURS)[k % 8]
    cell = tuple(int(v) for v in rng.integers(0, 3, 2))
    scenes.append(canvas.render([(shape, colour, cell, 1.0, (0, 0))], canvas.background()))
    captions.append(f"A picture of a {shape}")  # the shape's token is column 5
    cells.append(cell)
  dense = maps.dense_maps(features, scenes, captions, functional_rows=False)
  inside, outside = [], []
  for i, (col, row) in enumerate(cells):
    word = dense[i, i, 1:, 5].reshape(grid, grid)
    mask = np.zeros((grid, grid), bool)
    mask[row * grid // 3:-(-(row + 1) * grid // 3), col * grid // 3:-(-(col + 1) * grid // 3)] = 1
    inside.append(word[mask].mean())
    outside.append(word[~mask].mean())
  inside, outside = np.asarray(inside), np.asarray(outside)
  return float(inside.mean()), float(outside.mean()), float(np.mean(inside > outside))


NEGATED = re.compile(r"An image of a (\w+) (?:and not|but no|without) a (\w+)")
BOTH = re.compile(r"An image of a (\w+) and a (\w+)")


def caption_kind(caption, answer):
  """The kind of a caption of a procedural negation item, by the item's true caption:
  `procedural_negation` (true "o1 not o2"): "true", "swapped", "o2 alone", "o1 and o2";
  `procedural_negation_present` (true "o1 and o2"): "true", "o1 not o2", "o2 not o1",
  "absent shape"."""
  if caption == answer:
    return "true"
  negated, both = NEGATED.fullmatch(caption), BOTH.fullmatch(caption)
  if NEGATED.fullmatch(answer):
    return "swapped" if negated else "o1 and o2" if both else "o2 alone"
  if negated:
    return "o1 not o2" if negated.group(1) == BOTH.fullmatch(answer).group(1) else "o2 not o1"
  return "absent shape"


KINDS = {"procedural_negation": ("true", "swapped", "o2 alone", "o1 and o2"),
         "procedural_negation_present": ("true", "o1 not o2", "o2 not o1", "absent shape")}


def negation_picks(data, scorers, name):
  """-> {scorer: {caption kind: share of the items of `name` where it scored highest}}."""
  bench = benchmarks.read(name, data)
  images = [multiple_choice.item_image(i) for i in bench.items]
  captions = [tuple(benchmarks.rewrite(bench, c) for c in i.captions) for i in bench.items]
  out = {}
  for label, scorer in scorers.items():
    picks = np.argmax(scorer.score(images, captions), axis=1)
    kinds = [caption_kind(i.captions[k], i.captions[i.answer])
             for i, k in zip(bench.items, picks)]
    out[label] = {kind: kinds.count(kind) / len(kinds) for kind in KINDS[name]}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--variant", default="", help="tokens or grounded: a positive control's "
                      "backbone and scorer (`bash launch/dcsm_shapes.sh SEED VARIANT`)")
  parser.add_argument("--scorer", default="", help="another scorer of the same backbone "
                      "(default workdirs/shapes_dcsm_{VARIANT_}SEED/scorer); its own column rule")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args()
  run = f"{args.variant}_{args.seed}" if args.variant else str(args.seed)
  data = f"workdirs/shapes_data_{args.seed}"
  clip = f"workdirs/shapes_clip_{run}/export"
  dense, _ = scoring.load(clip, args.scorer or f"workdirs/shapes_dcsm_{run}/scorer")
  features = dense.features
  scorers = {"global_cosine": multiple_choice.GlobalCosine(loading.embedder(clip)),
             "dcsm": dense}
  result = {"hard_negative_pairs": hard_negative_pairs(data, scorers)}
  result["localisation"] = dict(zip(("inside", "elsewhere", "inside_higher"),
                                    localisation(features)))
  result["negation_picks"] = {name: negation_picks(data, scorers, name) for name in KINDS}
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
