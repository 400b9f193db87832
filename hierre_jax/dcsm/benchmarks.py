"""Readers of the compositional multiple-choice benchmarks (DCSM_SPEC section 7) and of the
procedural test sets, in their upstream formats and the layouts the release reads
(DCSM_SPEC section 9): one `--data_dir` holds them all, as the release's `root_dir`:

  controlled_images_dataset.json, controlled_clevr_dataset.json (image_path "data/...")
      + controlled_images/, controlled_clevr/           WhatsUp A / B
  coco_qa_{one,two}_obj.json + val2017/, vg_qa_{one,two}_obj.json + vg_images/
  visual_genome_attribution.json + images/ (or VG_100K/)
  clevr_bind/two_object/{train,val,gen}.csv + clevr_bind/two_object/images/{split}/
  NegBench/evaluation data/images/{COCO_val,VOC2007}_mcq_llama3.1_rephrased.csv, images by
      file name in val2017/ or VOC2007/JPEGImages/
  NCD_colorful_composite_squares/{c1}_{A}_{c2}_{B}.<ext> (ncd_1 and ncd_2: two phrasings)

(each file is also found directly in `--data_dir`, or under `data/`). Every benchmark is a
list of `Item`s: one image, K candidate captions, the index of the true one (the first in
the release's files, unless a format has an answer column). A reader never renames or moves
a user's files: an image named differently by the release (WhatsUp's "on" -> "above",
"under" -> "below") is looked up under both names. A malformed record or a file name that
does not parse raises DataError naming the file (and the record index); the item count the
spec lists is kept beside the count found (`Benchmark.expected`).
"""
import csv
import dataclasses
import json
import os
import re

from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax.dcsm import procedural


@dataclasses.dataclass(frozen=True)
class Item:
  image: str              # path ("" when no candidate file exists)
  captions: tuple         # K strings
  answer: int = 0         # index of the true caption
  box: tuple = None       # (x, y, w, h) crop of the image (VG-Attribution), or None
  looked_for: str = ""    # the path named by the record (for a missing image)
  group: str = ""         # the item's kind where a format names one (NegBench's template)


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str
  source: str             # the annotation file read
  items: list
  prefix: str = ""        # the release's caption prefix for this benchmark
  on_under: bool = False  # the release's WhatsUp " on" / " under" rewrites apply
  expected: int = None    # the item count DCSM_SPEC lists for the distributed files
  skipped: tuple = ()     # files passed over as the release's reader passes them over

  @property
  def count_note(self):
    """"" when the count is as distributed (or none is listed) and nothing was passed over,
    else what differs."""
    notes = []
    if self.skipped:
      notes.append(f"{len(self.skipped)} file(s) passed over as the release's reader does "
                   f"(e.g. {self.skipped[0]})")
    if self.expected is not None and self.expected != len(self.items):
      notes.append(f"{len(self.items)} items where the distributed benchmark has "
                   f"{self.expected}; its published numbers are not comparable")
    return f"{self.source}: {'; '.join(notes)}" if notes else ""

  @property
  def missing(self):
    return [item for item in self.items if not item.image]


def _data_error(path, index, why):
  return errors.DataError(f"{path}: record {index}: {why}")


def _find(data_dir, candidates, what):
  """The first of `candidates` (paths relative to data_dir) that exists; UserError listing
  them all when none does."""
  for rel in candidates:
    path = os.path.join(data_dir, rel)
    if os.path.exists(path):
      return path
  raise errors.UserError(f"{data_dir}: no {what} (looked for {', '.join(candidates)})")


# Item counts of the distributed files (DCSM_SPEC section 7).
EXPECTED_ITEMS = {"whatsup_a": 412, "whatsup_b": 408, "coco_spatial_1": 2247,
                  "coco_spatial_2": 440, "vg_spatial_1": 1160, "vg_spatial_2": 291,
                  "vg_attribution": 28748, "negbench_coco": 5914, "negbench_voc": 5031}


def _image(data_dir, roots, rel, renames=()):
  """-> (the first existing file among roots x (rel and its renamed forms: each rename
  applied on top of the earlier ones) whose path lies inside data_dir, or "", rel): a file
  a record names outside --data_dir (an absolute path, "..", a root above it) is never read
  (links inside data_dir are followed: a linked val2017/ is a user's copy)."""
  names = [rel]
  for a, b in renames:
    names += [re.sub(a, b, name) for name in names if re.search(a, name)]
  inside = os.path.abspath(data_dir)
  for root in roots:
    for name in names:
      path = os.path.join(root, name)
      if os.path.isfile(path) and locations.within(os.path.abspath(path), inside):
        return path, rel
  return "", rel


def _captions(path, index, values, k):
  if len(values) != k or not all(isinstance(c, str) and c for c in values):
    raise _data_error(path, index, f"expected {k} non-empty captions, found {values!r}")
  return tuple(values)


def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except ValueError as e:
    raise errors.DataError(f"{path}: not valid JSON ({e})") from None


def _read_csv(path, columns):
  with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM, as the release reads
    reader = csv.DictReader(f)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
      raise errors.DataError(f"{path}: missing columns {missing} (has {reader.fieldnames})")
    return list(reader)


# The release renames WhatsUp images on disk; we look for both names.
WHATSUP_RENAMES = ((r"_on_", "_above_"), (r"_under_", "_below_"))


def whatsup(data_dir, subset):
  """WhatsUp A ("images") or B ("clevr"): [{image_path, caption_options[4]}]."""
  name = {"a": "controlled_images_dataset.json", "b": "controlled_clevr_dataset.json"}[subset]
  path = _find(data_dir, [name, os.path.join("data", name), os.path.join("whatsup", name)],
               f"WhatsUp {subset.upper()} file")
  folder = os.path.dirname(path)
  # image_path is relative to whatsup_vlms' checkout ("data/controlled_images/..."): found
  # beside the json's folder, or in it with "data/" dropped.
  roots = [os.path.dirname(folder), folder, data_dir, os.path.join(data_dir, "data")]
  items = []
  for i, record in enumerate(_read_json(path)):
    if not isinstance(record, dict) or not isinstance(record.get("image_path"), str):
      raise _data_error(path, i, "expected an object with image_path and caption_options")
    captions = _captions(path, i, record.get("caption_options"), 4)
    image, rel = _image(data_dir, roots, record["image_path"],
                        WHATSUP_RENAMES + ((r"^data/", ""),))
    items.append(Item(image, captions, looked_for=rel))
  return Benchmark(f"whatsup_{subset}", path, items, prefix="An image of ", on_under=True,
                   expected=EXPECTED_ITEMS[f"whatsup_{subset}"])


def spatial_pairs(data_dir, source, objects):
  """COCO-spatial ("coco") or VG-spatial ("vg"), one or two objects:
  [[image_id, true caption, false caption]]."""
  name = f"{source}_qa_{'one' if objects == 1 else 'two'}_obj.json"
  path = _find(data_dir, [name, os.path.join("data", name)], f"{source} spatial file")
  if source == "coco":
    rel_of = lambda image_id: os.path.join("val2017", f"{int(image_id):012d}.jpg")
  else:
    rel_of = lambda image_id: os.path.join("vg_images", f"{image_id}.jpg")
  roots = [os.path.dirname(path), data_dir, os.path.join(data_dir, "data")]
  items = []
  for i, record in enumerate(_read_json(path)):
    if not isinstance(record, list) or len(record) != 3:
      raise _data_error(path, i, f"expected [image_id, true caption, false caption], "
                        f"found {record!r}")
    try:
      rel = rel_of(record[0])
    except (TypeError, ValueError):
      raise _data_error(path, i, f"image id {record[0]!r} is not a number") from None
    image, _ = _image(data_dir, roots, rel)
    items.append(Item(image, _captions(path, i, record[1:], 2), looked_for=rel))
  name = f"{source}_spatial_{objects}"
  return Benchmark(name, path, items, expected=EXPECTED_ITEMS[name])


def clevr_bind(data_dir, split):
  """CLEVR-bind two-object CSV {train,val,gen}.csv: file_name, pos, neg_0..neg_3; images in
  images/{split}/ beside it (the release's clevr_bind/two_object/ layout)."""
  name = f"{split}.csv"
  path = _find(data_dir, [os.path.join("clevr_bind", "two_object", name),
                          os.path.join("two_object", name), os.path.join("clevr_bind", name),
                          name], f"CLEVR-bind {name}")
  columns = ["file_name", "pos", "neg_0", "neg_1", "neg_2", "neg_3"]
  folder = os.path.dirname(path)
  roots = [os.path.join(folder, "images", split), os.path.join(folder, "images"), folder]
  items = []
  for i, row in enumerate(_read_csv(path, columns)):
    image, rel = _image(data_dir, roots, row["file_name"])
    items.append(Item(image, _captions(path, i, [row[c] for c in columns[1:]], 5),
                      looked_for=rel))
  return Benchmark(f"clevr_bind_{split}", path, items, prefix="An image of a ")


def vg_attribution(data_dir, true_first=False):
  """ARO VG-Attribution: [{image_path, bbox_x/y/w/h, true_caption, false_caption}]; the
  upstream order puts the false caption first (answer 1), the release the true one."""
  name = "visual_genome_attribution.json"
  path = _find(data_dir, [name, os.path.join("data", name)], "VG-Attribution file")
  roots = [os.path.join(folder, sub) for folder in (os.path.dirname(path), data_dir)
           for sub in ("images", "VG_100K", "")]
  items = []
  for i, r in enumerate(_read_json(path)):
    try:
      box = tuple(float(r[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
      captions = _captions(path, i, [r["true_caption"], r["false_caption"]], 2)
      rel = r["image_path"]
    except (KeyError, TypeError, ValueError) as e:
      raise _data_error(path, i, f"expected image_path, bbox_x/y/w/h, true_caption and "
                        f"false_caption ({e!r})") from None
    image, _ = _image(data_dir, roots, rel)
    if true_first:
      items.append(Item(image, captions, 0, box, rel))
    else:
      items.append(Item(image, captions[::-1], 1, box, rel))
  return Benchmark("vg_attribution", path, items, prefix="An image of ",
                   expected=EXPECTED_ITEMS["vg_attribution"])


def negbench(data_dir, source):
  """NegBench MCQ CSV (COCO or VOC): image_path, correct_answer (index), caption_0..3,
  correct_answer_template (kept as each item's group). An image_path as written (relative
  to the CSV's folder or data_dir) or, as the release reads it, its file name (Windows or
  POSIX path) under val2017/ (COCO) or VOC2007/JPEGImages/ (VOC)."""
  name = {"coco": "COCO_val_mcq_llama3.1_rephrased.csv",
          "voc": "VOC2007_mcq_llama3.1_rephrased.csv"}[source]
  path = _find(data_dir, [os.path.join("NegBench", "evaluation data", "images", name),
                          # the release's Windows path, one folder of that name on POSIX
                          os.path.join("NegBench\\evaluation data\\images", name), name,
                          os.path.join("images", name), os.path.join("negbench", name)],
               f"NegBench {source} file")
  columns = ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2",
             "caption_3"]
  by_name = os.path.join(data_dir, *{"coco": ("val2017",), "voc": ("VOC2007", "JPEGImages")}[
      source])
  roots = [os.path.dirname(path), data_dir]
  items = []
  for i, row in enumerate(_read_csv(path, columns)):
    try:
      answer = int(row["correct_answer"])
    except ValueError:
      raise _data_error(path, i, f"correct_answer {row['correct_answer']!r} is not an "
                        "index") from None
    if not 0 <= answer < 4:
      raise _data_error(path, i, f"correct_answer {answer} is not in 0..3")
    rel = row["image_path"]
    # the release's lookup (the file name in val2017/ or VOC2007/JPEGImages/) first
    image = (_image(data_dir, [by_name], re.split(r"[\\/]", rel)[-1])[0]
             or _image(data_dir, roots, rel)[0])
    items.append(Item(image, _captions(path, i, [row[f"caption_{k}"] for k in range(4)], 4),
                      answer, looked_for=rel, group=row.get("correct_answer_template") or ""))
  return Benchmark(f"negbench_{source}", path, items,
                   expected=EXPECTED_ITEMS[f"negbench_{source}"])


NCD_FOLDER = "NCD_colorful_composite_squares"
NCD_NAME = re.compile(r"^([^_]+)_([^_]+)_([^_]+)_([^_]+)\.(png|jpe?g)$", re.IGNORECASE)


def ncd_captions(c1, a, c2, b, subset):
  """(true, false) as the release phrases them: subset 1 names the objects in file order,
  subset 2 in reverse; the false caption swaps the colours."""
  if subset == 1:
    return f"A picture of a {c1} {a} and a {c2} {b}", f"A picture of a {c2} {a} and a {c1} {b}"
  return f"A picture of a {c2} {b} and a {c1} {a}", f"A picture of a {c1} {b} and a {c2} {a}"


def ncd(data_dir, subset):
  """NCD composites, no annotation file: every `{c1}_{A}_{c2}_{B}.<png|jpg>` of the folder
  NCD_colorful_composite_squares (or data_dir itself, so named); subsets 1 and 2 are two
  phrasings of the same images. As the release's reader, files named MIRROR, files that are
  no image and names of another shape are passed over (counted in `skipped`, said in the
  results); hidden files are not counted."""
  folder = data_dir if os.path.basename(os.path.normpath(data_dir)) == NCD_FOLDER else _find(
      data_dir, [NCD_FOLDER], "NCD folder")
  items, skipped = [], []
  for name in sorted(os.listdir(folder)):
    if name.startswith("."):
      continue
    match = NCD_NAME.match(name)
    if not match or "MIRROR" in name:
      skipped.append(name)
      continue
    items.append(Item(os.path.join(folder, name), ncd_captions(*match.groups()[:4], subset),
                      looked_for=name))
  if not items:
    raise errors.UserError(f"{folder}: no {{c1}}_{{A}}_{{c2}}_{{B}}.png (or .jpg) images")
  return Benchmark(f"ncd_{subset}", folder, items, skipped=tuple(skipped))


# name -> (reader, the files' folder under --data_dir, category for the procedural summary)
READERS = {
    "whatsup_a": lambda d: whatsup(d, "a"),
    "whatsup_b": lambda d: whatsup(d, "b"),
    "coco_spatial_1": lambda d: spatial_pairs(d, "coco", 1),
    "coco_spatial_2": lambda d: spatial_pairs(d, "coco", 2),
    "vg_spatial_1": lambda d: spatial_pairs(d, "vg", 1),
    "vg_spatial_2": lambda d: spatial_pairs(d, "vg", 2),
    "clevr_bind_train": lambda d: clevr_bind(d, "train"),
    "clevr_bind_val": lambda d: clevr_bind(d, "val"),
    "clevr_bind_gen": lambda d: clevr_bind(d, "gen"),
    "vg_attribution": vg_attribution,
    "negbench_coco": lambda d: negbench(d, "coco"),
    "negbench_voc": lambda d: negbench(d, "voc"),
    "ncd_1": lambda d: ncd(d, 1),
    "ncd_2": lambda d: ncd(d, 2),
}

# The procedural test sets (`procedural.Generator.write_test`), read by the same readers.
PROCEDURAL = {
    "procedural_spatial": lambda d: _renamed(whatsup(os.path.join(d, "test", "whatsup"), "a"),
                                             "procedural_spatial"),
    "procedural_spatial_unseen": lambda d: _renamed(
        whatsup(os.path.join(d, "test", "whatsup_gen"), "a"), "procedural_spatial_unseen"),
    "procedural_spatial_swap": lambda d: _renamed(
        spatial_pairs(os.path.join(d, "test", "coco_spatial"), "coco", 2),
        "procedural_spatial_swap"),
    "procedural_colour": lambda d: _renamed(clevr_bind(os.path.join(d, "test", "clevr_bind"),
                                                       "val"), "procedural_colour"),
    "procedural_colour_unseen": lambda d: _renamed(
        clevr_bind(os.path.join(d, "test", "clevr_bind"), "gen"), "procedural_colour_unseen"),
    "procedural_negation": lambda d: _renamed(negbench(os.path.join(d, "test", "negbench"),
                                                       "coco"), "procedural_negation"),
    "procedural_negation_present": lambda d: _renamed(
        negbench(os.path.join(d, "test", "negbench_present"), "coco"),
        "procedural_negation_present"),
}


# The release's DCSM-only caption rewrites (substring replacements, in this order).
DCSM_REWRITES = ((" behind ", " above "), (" in front of ", " below "), (" bottom", " below"),
                 (" top", " above"))


def rewrite(benchmark, caption, release=True, dcsm=False):
  """A caption as the release scores it: with `release` WhatsUp's " on" -> " above" and
  " under" -> " below" and the benchmark's prefix (every scorer); with `dcsm` also
  DCSM_REWRITES (the DCSM path only), applied as the release does before the prefix (so a
  caption's first word is never rewritten). Replacements are plain substring ones."""
  if release and benchmark.on_under:
    caption = caption.replace(" on", " above").replace(" under", " below")
  if dcsm:
    for old, new in DCSM_REWRITES:
      caption = caption.replace(old, new)
  return benchmark.prefix + caption if release else caption


def _renamed(benchmark, name):
  """A procedural test set read by a benchmark's reader: its name, no distributed count."""
  return dataclasses.replace(benchmark, name=name, expected=None)


def read(name, data_dir):
  """The benchmark `name` (READERS or PROCEDURAL) from data_dir."""
  readers = {**READERS, **PROCEDURAL}
  if name not in readers:
    raise errors.UserError(f"unknown benchmark {name!r}; known: {', '.join(readers)}")
  if name in PROCEDURAL:
    procedural.verify(data_dir)
  return readers[name](data_dir)
