"""BREEDS hierarchical classification (SPEC section 5): recall@1/5 of the (superclass,
subclass) pair among all ordered label pairs.

Labels: every superclass and subclass name of a dataset (first name before a comma),
embedded with the 80-template ImageNet ensemble. For an image v with s(x) = <v, t_x>,
every ordered pair (x, y) of distinct labels with d(x) < d(y) scores
s(x) + s(y) - alpha * ext(t_x, t_y); the correct pair is (superclass, subclass) of the
image's class. alpha is chosen from ALPHAS by seeded 2-fold cross-validation, separately
for R@1 and R@5. Images: an ImageNet-style folder `<root>/<wnid>/*` (ImageNet val).
"""
import json
import os

import numpy as np

from hierre_jax.common.errors import DataError
from hierre_jax.evaluators import prompts
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import uncertainty
from hierre_jax.evaluators.ranking import ranks_of_targets
from hierre_jax.geometry import sphere

DATASETS = ("living17", "nonliving26", "entity13", "entity30")
# A documented choice (the paper's range is not legible): 20 values from 0 (no hierarchy
# term) to 1 rad^-1, recorded with every result.
ALPHAS = tuple(float(a) for a in np.linspace(0.0, 1.0, 20))
KS = (1, 5)


def first_name(name):
  return name.split(",")[0].strip()


class Hierarchy:
  """One BREEDS dataset: label names (superclasses first), and per subclass wnid its
  (superclass label, subclass label) indices."""

  def __init__(self, hierarchies_json, dataset):
    with open(hierarchies_json, encoding="utf-8") as f:
      data = json.load(f)
    if dataset not in data:
      raise DataError(f"{hierarchies_json}: no dataset {dataset!r}; it has {sorted(data)}")
    supers = data[dataset]
    names = [first_name(s["superclass_name"]) for s in supers]
    names += [first_name(c["name"]) for s in supers for c in s["subclasses"]]
    self.labels = list(dict.fromkeys(names))
    index = {n: i for i, n in enumerate(self.labels)}
    self.pair_of_wnid = {c["wnid"]: (index[first_name(s["superclass_name"])],
                                     index[first_name(c["name"])])
                         for s in supers for c in s["subclasses"]}


def image_folder(root, wnids, max_per_class=None):
  """-> (paths, [N] wnid of each) of `<root>/<wnid>/*` files, sorted; a missing or empty
  class folder is an error naming the wnid."""
  paths, classes = [], []
  for wnid in wnids:
    folder = os.path.join(root, wnid)
    files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if not files:
      raise DataError(f"{root}: no images for class {wnid} (expected {folder}/*)")
    files = files[:max_per_class] if max_per_class else files
    paths += [os.path.join(folder, f) for f in files]
    classes += [wnid] * len(files)
  return paths, classes


def ordered_pairs(label_emb, root, geometry=sphere.SPHERE):
  """-> ([P] x, [P] y) label indices of every ordered pair with d(x) < d(y), and [P]
  ext(t_x, t_y)."""
  d = np.asarray(geometry.radius(label_emb, root))
  x, y = np.nonzero(d[:, None] < d[None, :])
  ext = np.asarray(geometry.exterior_angle(label_emb[x], label_emb[y], root))
  return x, y, ext


def pair_ranks(image_emb, label_emb, root, targets, alphas=ALPHAS, chunk=256,
               geometry=sphere.SPHERE):
  """[M, D] images, [L, D] labels, [M, 2] correct (x, y) -> [A, M] 0-based rank of the
  correct pair for each alpha (ties: lower pair index first); a pair that is not ordered
  by radius (d(x) >= d(y)) is never listed and gets rank P (a miss at any k)."""
  x, y, ext = ordered_pairs(label_emb, root, geometry)
  pair_index = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(x, y))}
  target = np.array([pair_index.get((int(a), int(b)), -1) for a, b in targets])
  listed = target >= 0
  ranks = np.full((len(alphas), len(image_emb)), len(x))
  for s in range(0, len(image_emb), chunk):
    sims = geometry.similarity(image_emb[s:s + chunk], label_emb)  # [m, L]
    base = sims[:, x] + sims[:, y]  # [m, P]
    t = np.maximum(target[s:s + chunk], 0)
    ok = listed[s:s + chunk]
    for a, alpha in enumerate(alphas):
      ranks[a, s:s + chunk] = np.where(ok, ranks_of_targets(base - alpha * ext[None], t),
                                       len(x))
  return ranks


def cross_validated_recall(hits, seed=0):
  """[A, M] bool hits per alpha and image -> (recall, [2] chosen alpha indices, [M] each
  image's held-out hit): pick the best alpha on one random half, report on the other,
  average both directions."""
  order = np.random.default_rng(seed).permutation(hits.shape[1])
  halves = (order[:len(order) // 2], order[len(order) // 2:])
  recalls, chosen = [], []
  held_out = np.zeros(hits.shape[1])
  for fit, test in (halves, halves[::-1]):
    best = int(np.argmax(hits[:, fit].mean(1)))
    chosen.append(best)
    recalls.append(hits[best, test].mean())
    held_out[test] = hits[best, test]
  return float(np.mean(recalls)), chosen, held_out


class Breeds:
  """R@1/R@5 on each BREEDS dataset given, and their mean."""

  name = "breeds"

  def __init__(self, hierarchies_json, imagenet_classnames_json, images_root,
               datasets=DATASETS, max_per_class=None, seed=0):
    with open(imagenet_classnames_json, encoding="utf-8") as f:
      self.templates = json.load(f)["templates"]
    self.datasets = {}
    for name in datasets:
      hierarchy = Hierarchy(hierarchies_json, name)
      paths, wnids = image_folder(images_root, list(hierarchy.pair_of_wnid), max_per_class)
      self.datasets[name] = (hierarchy, paths, np.array([hierarchy.pair_of_wnid[w]
                                                          for w in wnids]))
    self.seed = seed

  def run(self, embedder):
    labels = list(dict.fromkeys(l for h, _, _ in self.datasets.values() for l in h.labels))
    index = {label: i for i, label in enumerate(labels)}
    ensemble = prompts.ensemble(embedder, labels, self.templates)  # once for all datasets
    _, root = embedder.texts([])
    out = {"alphas": list(ALPHAS), "seed": self.seed}
    held_out = {k: [] for k in KS}  # per dataset: each image's held-out hit
    items = {}
    for name, (hierarchy, paths, targets) in self.datasets.items():
      label_emb = ensemble[[index[label] for label in hierarchy.labels]]
      ranks = pair_ranks(embedder.images(paths), label_emb, root, targets,
                         geometry=embedder.geometry)
      result = {"num_images": len(paths), "num_labels": len(hierarchy.labels)}
      for k in KS:
        result[f"r@{k}"], chosen, hits = cross_validated_recall(ranks < k, self.seed)
        result[f"alpha_r@{k}"] = [ALPHAS[c] for c in chosen]
        held_out[k].append(hits)
        items[f"{name}/r@{k}"] = uncertainty.hits(hits)
      out[name] = result
    for k in KS:
      out[f"mean/r@{k}"] = float(np.mean([out[n][f"r@{k}"] for n in self.datasets]))
      # the mean over datasets: each image weighs 1 / (datasets x its dataset's images)
      weights = np.concatenate([np.full(len(h), 1 / len(h)) for h in held_out[k]])
      items[f"mean/r@{k}"] = uncertainty.Items("weighted_mean",
                                               (np.concatenate(held_out[k]), weights))
    return {**out, "items": items}


registry.register(registry.Entry(
    "breeds",
    files={"breeds_hierarchies": ("breeds", "breeds_hierarchies_full.json"),
           "imagenet_classnames": ("classnames", "imagenet_classnames_openai.json"),
           "imagenet_val": ("imagenet", "val")},
    build=lambda paths, options: Breeds(paths["breeds_hierarchies"],
                                        paths["imagenet_classnames"], paths["imagenet_val"]),
    columns=(("BREEDS R@1", "breeds/mean/r@1"), ("R@5", "breeds/mean/r@5")),
    item_count=lambda result, key: sum(  # the images of the four sets
        v for k, v in result.items() if k.startswith("breeds/") and k.endswith("/num_images"))))
