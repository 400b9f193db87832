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


def _read_json(path):
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: not found")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


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
        raise KeyError(f"{hierarchies}: no BREEDS dataset {dataset!r}; it has {sorted(data)}")
      members = [(c["imagenet_idx"], breeds.first_name(s["superclass_name"]))
                 for s in data[dataset] for c in s["subclasses"]]
      indices, groups = [i for i, _ in members], {"breeds": [g for _, g in members]}
    out = ClassSet(spec, [names["classes"][i] for i in indices], names["templates"],
                   [wnid_of[i] for i in indices], groups)
  else:
    data = _read_json(spec)
    for key in ("classes", "templates"):
      if key not in data:
        raise KeyError(f"{spec}: no {key!r} list")
    out = ClassSet(os.path.basename(spec), data["classes"], data["templates"],
                   data.get("wnids"), data.get("groups", {}))
    for name, labels in [("wnids", out.wnids or out.classes)] + list(out.groups.items()):
      if len(labels) != len(out.classes):
        raise ValueError(f"{spec}: {name} has {len(labels)} entries for "
                         f"{len(out.classes)} classes")
  if wn is not None and out.wnids:
    out.synsets = [ontology.synset_of_wnid(wn, w) for w in out.wnids]
  return out


def labelled_images(class_set, images_dir="", split="test", tfds_data_dir=None,
                    max_per_class=None):
  """-> (images: paths or PIL images, [N] class indices) of a class set: tensorflow-datasets
  for CIFAR-100 (`split`), else `images_dir`/<wnid or class name>/* files."""
  if class_set.tfds_name and not images_dir:
    return zero_shot.tfds_images(class_set.tfds_name, split, tfds_data_dir)
  if not images_dir:
    raise ValueError(f"{class_set.name}: images need a folder <images>/<wnid or class>/*")
  keys = class_set.folder_keys()
  paths, found = breeds.image_folder(images_dir, keys, max_per_class)
  index = {k: i for i, k in enumerate(keys)}
  return paths, [index[k] for k in found]
