"""Procedural stand-in for the DCSM training and test data (DCSM_SPEC section 6, a CHOICE:
the release's training images are not public): filled 2-D shapes with single-token names on
square canvases, written with the release's file names and caption templates, and
multiple-choice test sets in the formats of the real benchmarks (`dcsm.benchmarks`).

  python -m hierre_jax.dcsm make-data --out DIR --seed S

Layout of DIR:
  train/spatial/NNNNN/{A}_{rel}_{B}.png and CUTMIX_{A}_{rel}_{B}.png (A and B swapped in place)
  train/binding/NNNNN/{c1}_{A}_{c2}_{B}.png and MIRROR_... (colours exchanged); sizes as
      small_{A}_big_{B}.png and MIRROR_...
  train/negation.json ([{image, opposite, o1, o2}]: image holds o1 and no o2, opposite o2
      and no o1, paths relative to DIR) with images in train/negation/
  train/captions.csv (image, caption, regions): every image with each of its captions, and
      where the caption's shape, colour and size words are drawn (`grounding`)
  val/: the same for validation
  test/whatsup/controlled_images_dataset.json, test/coco_spatial/coco_qa_two_obj.json (+
      val2017/), test/clevr_bind/{val,gen}.csv, test/negbench/COCO_val_mcq_llama3.1_rephrased.csv,
      test/whatsup_gen/controlled_images_dataset.json,
      test/negbench_present/COCO_val_mcq_llama3.1_rephrased.csv (the negation control)
"gen" sets hold only object-colour and object-pair combinations that training never shows
(no training or validation image holds one; UNSEEN_PAIRS shape pairs are held out); every
distractor of a test item is false of its image. A set written by an older generator
(`GENERATOR_VERSION`) is refused.
"""
import csv
import dataclasses
import json
import os
import re

import numpy as np
import tqdm

from hierre_jax.common import errors
from hierre_jax import grounding
from hierre_jax.common import locations
from hierre_jax.common import sealed
from hierre_jax.dcsm.drawing import COLOURS, Canvas

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "diamond", "ring")
RELATIONS = {"above": "above", "below": "below", "right": "to the right of",
             "left": "to the left of"}
CONVERSE = {"above": "below", "below": "above", "right": "left", "left": "right"}
NEGATIONS = ("and not", "but no", "without")
DATASETS = ("spatial", "binding", "negation")
VERSIONS = 2  # caption phrasings per pair
# What each generator changed; a set an older one wrote is refused (`verify`).
CHANGES = {
    2: "the colour sets' last distractor is false (version 1 had the true caption "
       "reordered) and negation scenes keep the held-out shape pairs apart",
    3: "6 held-out shape pairs (2 before) and the negation control with both shapes "
       "present (test/negbench_present)",
}
GENERATOR_VERSION = max(CHANGES)
UNSEEN_PAIRS = 6  # shape pairs never in one training scene, no shape in more than 2


def held_out(seed):
  """-> (colour per shape never drawn on it in training, shape pairs never placed in one
  training scene), fixed by `seed`."""
  rng = np.random.default_rng([seed, 1])
  colours = list(COLOURS)
  unseen_colour = {s: colours[(i + int(rng.integers(len(colours)))) % len(colours)]
                   for i, s in enumerate(SHAPES)}
  pairs = [frozenset((a, b)) for i, a in enumerate(SHAPES) for b in SHAPES[i + 1:]]
  unseen_pairs, uses = set(), dict.fromkeys(SHAPES, 0)
  for k in rng.permutation(len(pairs)):
    if len(unseen_pairs) < UNSEEN_PAIRS and all(uses[s] < 2 for s in pairs[k]):
      unseen_pairs.add(pairs[k])
      for s in pairs[k]:
        uses[s] += 1
  return unseen_colour, unseen_pairs


def spatial_caption(a, rel, b, version=0):
  """The release's spatial template; version 1 states the converse relation."""
  if version:
    return f"A picture of a {b} {RELATIONS[CONVERSE[rel]]} a {a}"
  return f"A picture of a {a} {RELATIONS[rel]} a {b}"


def binding_caption(c1, a, c2, b, version=0):
  """Colour (or small/big) binding; version 1 names the second object first."""
  if version:
    return f"A picture of a {c2} {b} and a {c1} {a}"
  return f"A picture of a {c1} {a} and a {c2} {b}"


def negation_caption(o1, o2, connective):
  return f"An image of a {o1} {connective} a {o2}"


class Generator:
  """Draws every file of the procedural data from one seed."""

  def __init__(self, out, seed=0, size=64):
    self.out, self.seed = out, seed
    self.rng = np.random.default_rng(seed)
    self.canvas = Canvas(size, self.rng)
    self.unseen_colour, self.unseen_pairs = held_out(seed)
    self.objects = {}  # path of each image saved -> the objects drawn in it

  def path(self, *parts):
    path = os.path.join(self.out, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

  def save(self, image, *parts):
    image.save(self.path(*parts))
    self.objects[os.path.join(*parts)] = image.info["objects"]
    return os.path.join(*parts)

  def regions(self, image, caption):
    """The words of `caption` that name one object of `image` (a path `save` returned): its
    shape, colour and size word ("small" / "big") -> [(word, box)] (`grounding`)."""
    named = {}
    for shape, colour, cell, scale, jitter in self.objects[image]:
      size = {scale < 1: "small", scale > 1: "big"}.get(True)
      for word in (shape, colour, size):
        named.setdefault(word, []).append(self.canvas.box(cell, scale, jitter))
    words = caption.split(" ")
    return [(w, boxes[0]) for w, boxes in named.items() if w in words and len(boxes) == 1]

  def shape_pair(self, unseen=False):
    while True:
      a, b = (str(s) for s in self.rng.choice(SHAPES, 2, replace=False))
      if (frozenset((a, b)) in self.unseen_pairs) == unseen:
        return a, b

  def colour_for(self, shape, unseen=False, avoid=()):
    if unseen:
      return self.unseen_colour[shape]
    options = [c for c in COLOURS if c != self.unseen_colour[shape] and c not in avoid]
    return str(self.rng.choice(options))

  def spatial_scene(self, unseen=False):
    """-> (A, rel, B, image, swapped image)."""
    a, b = self.shape_pair(unseen)
    rel = str(self.rng.choice(list(RELATIONS)))
    ca, cb = self.colour_for(a), self.colour_for(b)
    cell_a, cell_b = self.canvas.pair_cells(rel)
    bg, ja, jb = self.canvas.background(), self.canvas.jitter(), self.canvas.jitter()
    scene = [(a, ca, cell_a, 1.0, ja), (b, cb, cell_b, 1.0, jb)]
    swapped = [(b, cb, cell_a, 1.0, ja), (a, ca, cell_b, 1.0, jb)]
    return a, rel, b, self.canvas.render(scene, bg), self.canvas.render(swapped, bg)

  def binding_scene(self, sizes=False, unseen=False):
    """-> (attr1, A, attr2, B, image, mirrored image): colours (or small/big) exchanged."""
    a, b = self.shape_pair()
    rel = str(self.rng.choice(["left", "right"]))
    cell_a, cell_b = self.canvas.pair_cells(rel)
    bg, ja, jb = self.canvas.background(), self.canvas.jitter(), self.canvas.jitter()
    if sizes:
      c1, c2 = "small", "big"
      colour_a, colour_b = self.colour_for(a), self.colour_for(b)
      make = lambda s1, s2: [(a, colour_a, cell_a, s1, ja), (b, colour_b, cell_b, s2, jb)]
      return c1, a, c2, b, *(self.canvas.render(make(*s), bg) for s in ((0.5, 1.1),
                                                                          (1.1, 0.5)))
    c1 = self.colour_for(a, unseen)
    c2 = self.colour_for(b, unseen, avoid=(c1,))
    if c2 == c1:  # two unseen colours that coincide: pick another pair
      return self.binding_scene(sizes, unseen)
    if not unseen and (self.unseen_colour[a] == c2 or self.unseen_colour[b] == c1):
      return self.binding_scene(sizes, unseen)  # the mirror would show an unseen combination
    make = lambda x, y: [(a, x, cell_a, 1.0, ja), (b, y, cell_b, 1.0, jb)]
    return c1, a, c2, b, self.canvas.render(make(c1, c2), bg), self.canvas.render(
        make(c2, c1), bg)

  def negation_scene(self):
    """-> (o1, o2, image with o1 and a third shape, opposite with o2 and the same third); no
    held-out shape pair in either image."""
    while True:
      o1, o2 = self.shape_pair()
      thirds = [s for s in SHAPES if s not in (o1, o2) and not {
          frozenset((o1, s)), frozenset((o2, s))} & self.unseen_pairs]
      if thirds:
        break
    third = str(self.rng.choice(thirds))
    rel = str(self.rng.choice(list(RELATIONS)))
    cells = self.canvas.pair_cells(rel)
    bg, j1, j2 = self.canvas.background(), self.canvas.jitter(), self.canvas.jitter()
    c1, c3 = self.colour_for(o1), self.colour_for(third)
    make = lambda o, c: [(o, c, cells[0], 1.0, j1), (third, c3, cells[1], 1.0, j2)]
    return o1, o2, self.canvas.render(make(o1, c1), bg), self.canvas.render(
        make(o2, self.colour_for(o2)), bg)

  def both_scene(self):
    """-> (o1, o2, an absent third shape, image with o1 and o2): the negation control."""
    o1, o2 = self.shape_pair()
    absent = str(self.rng.choice([s for s in SHAPES if s not in (o1, o2)]))
    cells = self.canvas.pair_cells(str(self.rng.choice(list(RELATIONS))))
    bg, j1, j2 = self.canvas.background(), self.canvas.jitter(), self.canvas.jitter()
    scene = [(o1, self.colour_for(o1), cells[0], 1.0, j1),
             (o2, self.colour_for(o2), cells[1], 1.0, j2)]
    return o1, o2, absent, self.canvas.render(scene, bg)

  def write_pairs(self, pairs, split):
    """The three paired sets of `split` (train, val), and split/captions.csv: every image
    with each of its captions (`read_pairs`), for contrastive training of a backbone."""
    for k in tqdm.trange(pairs, desc=f"{split}/spatial", leave=False):
      a, rel, b, image, swapped = self.spatial_scene()
      self.save(image, split, "spatial", f"{k:05d}", f"{a}_{rel}_{b}.png")
      self.save(swapped, split, "spatial", f"{k:05d}", f"CUTMIX_{a}_{rel}_{b}.png")
    for k in tqdm.trange(pairs, desc=f"{split}/binding", leave=False):
      c1, a, c2, b, image, mirror = self.binding_scene(sizes=k % 4 == 3)
      self.save(image, split, "binding", f"{k:05d}", f"{c1}_{a}_{c2}_{b}.png")
      self.save(mirror, split, "binding", f"{k:05d}", f"MIRROR_{c1}_{a}_{c2}_{b}.png")
    records = []
    for k in tqdm.trange(pairs, desc=f"{split}/negation", leave=False):
      o1, o2, image, opposite = self.negation_scene()
      records.append({"image": self.save(image, split, "negation", f"{k:05d}_a.png"),
                      "opposite": self.save(opposite, split, "negation", f"{k:05d}_b.png"),
                      "o1": o1, "o2": o2})
    with open(self.path(split, "negation.json"), "w") as f:
      json.dump(records, f, indent=1)
    with open(self.path(split, "captions.csv"), "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["image", "caption", "regions"])
      for pair in (p for ps in read_pairs(self.out, split).values() for p in ps):
        for version in pair.captions:
          for image, caption in zip((pair.image, pair.opposite), version):
            regions = self.regions(os.path.relpath(image, self.out), caption)
            writer.writerow([os.path.relpath(image, os.path.join(self.out, split)), caption,
                             grounding.format_regions(regions)])

  def write_whatsup(self, items, folder, unseen=False):
    """WhatsUp A/B format: [{image_path, caption_options[4]}], the true caption first."""
    records = []
    for k in range(items):
      a, rel, b, image, _ = self.spatial_scene(unseen)
      options = [f"a {a} {RELATIONS[r]} a {b}" for r in
                 [rel] + [r for r in RELATIONS if r != rel]]
      name = f"{a}_{rel}_{b}_{k:04d}.png"
      self.save(image, "test", folder, "images", name)
      records.append({"image_path": f"images/{name}", "caption_options": options})
    with open(self.path("test", folder, "controlled_images_dataset.json"), "w") as f:
      json.dump(records, f, indent=1)

  def write_coco_spatial(self, items):
    """COCO-spatial two-object format: [[image_id, true caption, false caption]]."""
    records = []
    for k in range(items):
      a, rel, b, image, _ = self.spatial_scene()
      image.convert("RGB").save(self.path("test", "coco_spatial", "val2017", f"{k + 1:012d}.jpg"),
                                quality=95)
      records.append([k + 1, f"a {a} {RELATIONS[rel]} a {b}", f"a {b} {RELATIONS[rel]} a {a}"])
    with open(self.path("test", "coco_spatial", "coco_qa_two_obj.json"), "w") as f:
      json.dump(records, f)

  def write_clevr_bind(self, items, split, unseen):
    """CLEVR-bind format: file_name, pos, neg_0..neg_3 (the release prefixes "An image of a
    "): the colours swapped (in both object orders) and one colour replaced (either object);
    a scorer that ignores binding tells only the last two apart (1/3, not chance's 1/5)."""
    with open(self.path("test", "clevr_bind", f"{split}.csv"), "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["file_name", "pos", "neg_0", "neg_1", "neg_2", "neg_3"])
      for k in range(items):
        c1, a, c2, b, image, _ = self.binding_scene(unseen=unseen)
        others = [c for c in COLOURS if c not in (c1, c2)]
        o1, o2 = (str(c) for c in self.rng.choice(others, 2, replace=False))
        name = self.save(image, "test", "clevr_bind", "images", f"{split}_{k:04d}.png")
        writer.writerow([os.path.basename(name), f"{c1} {a} and a {c2} {b}",
                         f"{c2} {a} and a {c1} {b}", f"{o1} {a} and a {c2} {b}",
                         f"{c1} {a} and a {o2} {b}", f"{c1} {b} and a {c2} {a}"])

  def write_negbench(self, items, present=False):
    """NegBench MCQ format: image_path, correct_answer (an index), caption_0..3,
    correct_answer_template; the true caption at a random index. The test (folder
    negbench): the image holds o1 and a third shape; true "o1 {not} o2", false "o2 {not}
    o1", "o2", "o1 and o2". With `present` the control (negbench_present): the image holds
    o1 and o2; true "o1 and o2", false "o1 {not} o2", "o2 {not} o1", an absent shape. A
    scorer blind to the negation words picks among the captions naming o1 and o2: half of
    the test's true picks, a third of the control's."""
    folder = "negbench_present" if present else "negbench"
    with open(self.path("test", folder, "COCO_val_mcq_llama3.1_rephrased.csv"), "w",
              newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["image_path", "correct_answer", "caption_0", "caption_1", "caption_2",
                       "caption_3", "correct_answer_template"])
      for k in range(items):
        conn = NEGATIONS[k % len(NEGATIONS)]
        if present:
          o1, o2, absent, image = self.both_scene()
          captions = [f"An image of a {o1} and a {o2}", negation_caption(o1, o2, conn),
                      negation_caption(o2, o1, conn), f"An image of a {absent}"]
        else:
          o1, o2, image, _ = self.negation_scene()
          captions = [negation_caption(o1, o2, conn), negation_caption(o2, o1, conn),
                      f"An image of a {o2}", f"An image of a {o1} and a {o2}"]
        order = self.rng.permutation(4)
        self.save(image, "test", folder, "images", f"{k:05d}.png")
        writer.writerow([f"images/{k:05d}.png", int(np.argmin(order))]
                        + [captions[i] for i in order] + ["affirmation" if present
                                                         else "negative"])

  def write_test(self, items):
    self.write_whatsup(items, "whatsup")
    self.write_whatsup(items, "whatsup_gen", unseen=True)
    self.write_coco_spatial(items)
    self.write_clevr_bind(items, "val", unseen=False)
    self.write_clevr_bind(items, "gen", unseen=True)
    self.write_negbench(items)
    self.write_negbench(items, present=True)


@dataclasses.dataclass(frozen=True)
class Pair:
  """An anchor image and its opposite, with (anchor caption, opposite caption) per version."""
  image: str
  opposite: str
  captions: tuple  # VERSIONS x (anchor caption, opposite caption)


SPATIAL_NAME = re.compile(r"^([a-z]+)_(above|below|left|right)_([a-z]+)\.png$")
BINDING_NAME = re.compile(r"^([a-z]+)_([a-z]+)_([a-z]+)_([a-z]+)\.png$")


def _paired_files(folder, pattern, prefix, what):
  """(match, anchor path, opposite path) of every anchor file of folder's sub-folders."""
  if not os.path.isdir(folder):
    raise errors.UserError(f"{folder}: no {what} training folder")
  out = []
  for sub in sorted(os.listdir(folder)):
    for name in sorted(os.listdir(os.path.join(folder, sub))):
      if name.startswith(prefix):
        continue
      path = os.path.join(folder, sub, name)
      match = pattern.match(name)
      if not match:
        raise errors.DataError(f"{path}: not a {what} file name ({pattern.pattern})")
      opposite = os.path.join(folder, sub, prefix + name)
      errors.require_file(opposite, f"{what} opposite image")
      out.append((match.groups(), path, opposite))
  return out


def read_pairs(data_dir, split="train"):
  """The three paired sets of a split of this layout -> {dataset: [Pair]} (a folder
  `make_data` wrote is verified first)."""
  verify(data_dir)
  train = os.path.join(data_dir, split)
  spatial = [Pair(image, opposite, tuple(
      (spatial_caption(a, rel, b, v), spatial_caption(b, rel, a, v))
      for v in range(VERSIONS)))
             for (a, rel, b), image, opposite in _paired_files(
                 os.path.join(train, "spatial"), SPATIAL_NAME, "CUTMIX_", "spatial")]
  binding = [Pair(image, opposite, tuple(
      (binding_caption(c1, a, c2, b, v), binding_caption(c2, a, c1, b, v))
      for v in range(VERSIONS)))
             for (c1, a, c2, b), image, opposite in _paired_files(
                 os.path.join(train, "binding"), BINDING_NAME, "MIRROR_", "binding")]
  path = errors.require_file(os.path.join(train, "negation.json"), "negation pairs file")
  with open(path) as f:
    records = json.load(f)
  negation = []
  for i, r in enumerate(records):
    if not isinstance(r, dict) or not {"image", "opposite", "o1", "o2"} <= set(r):
      raise errors.DataError(f"{path}: record {i}: expected image, opposite, o1 and o2")
    connectives = [NEGATIONS[(i + v) % len(NEGATIONS)]
                   for v in range(VERSIONS)]
    image, opposite = (os.path.join(data_dir, r[k]) for k in ("image", "opposite"))
    for p in (image, opposite):
      errors.require_file(p, f"negation image of record {i} of {path}")
    negation.append(Pair(image, opposite, tuple(
        (negation_caption(r["o1"], r["o2"], c),
         negation_caption(r["o2"], r["o1"], c)) for c in connectives)))
  return {"spatial": spatial, "binding": binding, "negation": negation}


def make_data(out, seed=0, size=64, train_pairs=600, test_items=200, overwrite=False):
  """Writes the procedural training, validation and test data to `out` (see the module
  doc), a new or empty folder (`overwrite`: a set make-data wrote there before, whose seal
  verifies, replaced whole; any other folder refused, `check_replaceable`); the validation
  sets have a sixth of the training pairs. Written beside `out`, sealed (`verify`), then
  renamed into place: a killed run leaves no half-written set."""
  if os.path.isdir(out) and os.listdir(out):
    if not overwrite:
      raise errors.UserError(f"{out}: not empty; make-data writes a whole new set (--overwrite "
                             "replaces a set make-data wrote there)")
    check_replaceable(out)
  errors.require_writable_dir(out)
  def write(tmp):
    generator = Generator(tmp, seed, size)
    generator.write_pairs(train_pairs, "train")
    generator.write_pairs(max(1, train_pairs // 6), "val")
    generator.write_test(test_items)
    record = {"generator": GENERATOR_VERSION, "seed": seed, "size": size,
              "train_pairs": train_pairs, "test_items": test_items,
              "unseen_colour": generator.unseen_colour,
              "unseen_pairs": sorted(sorted(p) for p in generator.unseen_pairs)}
    with open(os.path.join(tmp, "procedural.json"), "w") as f:
      json.dump(record, f, indent=1)
    return record

  return sealed.write_folder(out, write)


def check_replaceable(out):
  """Refuses (one line) to replace `out` unless make-data wrote it: procedural.json and the
  seal present, every file there sealed and unchanged. Never the current directory or one
  of its ancestors."""
  real = locations.real(out)
  if locations.within(os.getcwd(), real):
    raise errors.UserError(f"--out={out} is the current directory or holds it: --overwrite "
                           "replaces only a folder make-data wrote; choose another --out")
  if not os.path.exists(os.path.join(out, "procedural.json")):
    raise errors.UserError(f"--out={out} holds files make-data did not write (no "
                           "procedural.json): --overwrite replaces only a set make-data "
                           "wrote; choose a new or empty folder (nothing was deleted)")
  try:
    sealed.verify(out)
  except sealed.DamagedError as e:
    raise errors.UserError(f"--overwrite: {e}; its files are not all as make-data wrote them, "
                           "so nothing was deleted: remove the folder yourself or choose "
                           "another --out") from e
  extra = sealed.unsealed_files(out)
  if extra:
    raise errors.UserError(f"--overwrite: {os.path.join(out, extra[0])} was not written by "
                           f"make-data ({len(extra)} such file(s)), so nothing was deleted: "
                           "move them or choose another --out")


def verify(data_dir):
  """Refuses (`sealed.DamagedError`, naming the file) a folder `make_data` wrote whose files
  changed since; folders of other origin (no procedural.json) are not checked."""
  if os.path.exists(os.path.join(data_dir, "procedural.json")):
    try:
      record = sealed.verify(data_dir)
    except sealed.DamagedError as e:
      raise sealed.DamagedError(f"{e}; write the set again to a new folder (python -m "
                                "hierre_jax.dcsm make-data --out=NEW)") from e
    version = (record or {}).get("generator", 1)
    if version < GENERATOR_VERSION:
      since = "; ".join(f"{v}: {CHANGES[v]}" for v in sorted(CHANGES) if v > version)
      raise errors.UserError(f"{data_dir}: written by procedural generator {version} (since: "
                             f"{since}); write the set again: python -m hierre_jax.dcsm "
                             f"make-data --out={data_dir} --overwrite")
