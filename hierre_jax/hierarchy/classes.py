"""The class sets a hierarchy is built over: names and prompt templates, WordNet ids,
one-level human groupings, and where labelled images come from.

  cifar100          CIFAR-100 (classnames/ and ontology/cifar100_wordnet_curated.tsv;
                    images from tensorflow-datasets), grouping: cifar100_superclasses
  imagenet          the 1000 ImageNet classes (images: an ImageNet-style folder)
  breeds:<name>     the ImageNet classes of a BREEDS dataset, grouping: breeds
  FILE.json         {"classes": [...], "templates": [...], optional "wnids": [...] and
                    "groups": {ontology name: [group of each class]}}; images from a
                    folder <images>/<wnid or class name>/*
"""
import dataclasses
import json
import os

from hierre_jax.common import errors
from hierre_jax.evaluators import breeds
from hierre_jax.evaluators import zero_shot
from hierre_jax.hierarchy import ontology


@dataclasses.dataclass
class ClassSet:
  name: str
  classes: list  # K names, as they go into the templates
  templates: list
  wnids: list = None  # K ImageNet-style WordNet ids, where known
  groups: dict = dataclasses.field(default_factory=dict)  # ontology name -> K group names
  tfds_name: str = ""  # images from tensorflow-datasets (labels = class indices)
  synsets: list = None  # K WordNet synsets (set by `with_synsets`)

  def folder_keys(self):
    """The sub-folder of each class in an ImageNet-style image folder."""
    return self.wnids or self.classes


SPECS = "cifar100, imagenet, breeds:<name> or a FILE.json"


class ClassSetError(errors.UserError):
  """A class set that cannot give meaningful hierarchies; the message names the entry."""


def _read_json(path):
  errors.require_file(path, f"class set file (--classes takes {SPECS})")
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise ClassSetError(f"{path}: not valid JSON ({e})") from None


def check(class_set, source):
  """ClassSetError naming the first entry of `class_set` that would make its measures
  meaningless: a class given twice (the same WordNet id, or where there are no ids the same
  name up to case and surrounding spaces: its branch would count twice), a class name that
  is not a non-empty string, a template without '{}' (every class would get the same
  prompt, hence the same centroid)."""
  if not isinstance(class_set.classes, list) or len(class_set.classes) < 3:
    raise ClassSetError(f"{source}: 'classes' must be a list of 3 or more names")
  for key in ("templates", "wnids"):
    values = getattr(class_set, key)
    if values is not None and not (isinstance(values, list) and values
                                   and all(isinstance(v, str) for v in values)):
      raise ClassSetError(f"{source}: {key!r} must be a non-empty list of strings")
  for i, name in enumerate(class_set.classes):
    if not isinstance(name, str) or not name.strip():
      raise ClassSetError(f"{source}: class {i} is {name!r}; class names are non-empty strings")
  # Without ids, names compare as a prompt reads them: "Dog", "dog " and "dog" are one class.
  keys, what = ((class_set.wnids, "WordNet id") if class_set.wnids
                else ([n.strip().casefold() for n in class_set.classes], "name"))
  first = {}
  for i, key in enumerate(keys):
    if key in first:
      raise ClassSetError(f"{source}: class {i} ({class_set.classes[i]!r}) repeats the {what} "
                          f"{key!r} of class {first[key]} ({class_set.classes[first[key]]!r}); "
                          "list each class once")
    first[key] = i
  for i, template in enumerate(class_set.templates):
    if template.count("{}") != 1:
      raise ClassSetError(f"{source}: template {i} {template!r} needs exactly one '{{}}' where "
                          "the class name goes")
  for name, labels in [("wnids", class_set.wnids or class_set.classes)] + list(
      class_set.groups.items()):
    if len(labels) != len(class_set.classes):
      raise ClassSetError(f"{source}: {name} has {len(labels)} entries for "
                          f"{len(class_set.classes)} classes")


def load(spec, data_dir, wn=None):
  """A ClassSet by name (module docstring), its files read from `data_dir` (laid out like
  ../shared); with WordNet `wn`, its synsets set."""
  if spec == "cifar100":
    names = _read_json(os.path.join(data_dir, "classnames", "cifar_classnames_openai.json"))
    out = ClassSet("cifar100", names["CIFAR100"]["classes"], names["CIFAR100"]["templates"],
                   tfds_name="cifar100")
    tsv = os.path.join(data_dir, "ontology", "cifar100_wordnet_curated.tsv")
    rows = ontology.read_cifar100_tsv(tsv, out.classes)
    out.wnids = [r["wnid"] for r in rows]
    out.groups["cifar100_superclasses"] = [r["coarse"] for r in rows]
  elif spec == "imagenet" or spec.startswith("breeds:"):
    names = _read_json(os.path.join(data_dir, "classnames", "imagenet_classnames_openai.json"))
    info = _read_json(os.path.join(data_dir, "breeds", "imagenet_class_hierarchy", "modified",
                                   "dataset_class_info.json"))
    wnid_of = {int(index): wnid for index, wnid, _ in info}
    if spec == "imagenet":
      indices, groups = list(range(len(names["classes"]))), {}
    else:
      hierarchies = os.path.join(data_dir, "breeds", "breeds_hierarchies_full.json")
      dataset = spec.split(":", 1)[1]
      data = _read_json(hierarchies)
      if dataset not in data:
        raise ClassSetError(f"--classes={spec}: {hierarchies} has no BREEDS dataset "
                            f"{dataset!r}; use one of {', '.join(sorted(data))}")
      members = [(c["imagenet_idx"], breeds.first_name(s["superclass_name"]))
                 for s in data[dataset] for c in s["subclasses"]]
      indices, groups = [i for i, _ in members], {"breeds": [g for _, g in members]}
    out = ClassSet(spec, [names["classes"][i] for i in indices], names["templates"],
                   [wnid_of[i] for i in indices], groups)
  else:
    data = _read_json(spec)
    for key in ("classes", "templates"):
      if not isinstance(data, dict) or key not in data:
        raise ClassSetError(f"{spec}: no {key!r} list; a class set file is {{\"classes\": "
                            "[...], \"templates\": [\"a photo of a {}.\", ...], optional "
                            "\"wnids\" and \"groups\"}")
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
      raise ClassSetError(f"{spec}: 'groups' must map an ontology name to a list of groups")
    out = ClassSet(os.path.basename(spec), data["classes"], data["templates"],
                   data.get("wnids"), groups)
  check(out, spec)
  if wn is not None and out.wnids:
    out.synsets = [ontology.synset_of_wnid(wn, w, f"{spec}: class {i} ({out.classes[i]!r})")
                   for i, w in enumerate(out.wnids)]
  return out


def labelled_images(class_set, images_dir="", split="test", tfds_data_dir=None,
                    max_per_class=None):
  """-> (images: paths or PIL images, [N] class indices) of a class set: tensorflow-datasets
  for CIFAR-100 (`split`), else `images_dir`/<wnid or class name>/* files."""
  if class_set.tfds_name and not images_dir:
    return zero_shot.tfds_images(class_set.tfds_name, split, tfds_data_dir)
  if not images_dir:
    raise ClassSetError(f"{class_set.name}: images need a folder <images>/<wnid or class>/*")
  keys = class_set.folder_keys()
  paths, found = breeds.image_folder(images_dir, keys, max_per_class)
  index = {k: i for i, k in enumerate(keys)}
  return paths, [index[k] for k in found]
