"""Image-text retrieval R@1/5/10 (SPEC section 5): COCO captions JSON or a Flickr30K
Karpathy split JSON, with the images in a directory.

Text-to-image: every caption ranks all images by similarity; R@k is the share of
captions whose image is in the top k. Image-to-text: every image ranks all captions;
R@k is the share of images with one of their captions in the top k. Equal similarities
rank the lower index first (a stable sort). All scoring is chunked array work.
"""
import json
import os
import re

import numpy as np

from hierre_jax.evaluators import registry
from hierre_jax.evaluators import uncertainty
from hierre_jax.geometry import sphere
from hierre_jax.evaluators.ranking import ranks_of_targets, similarity_ranks
from hierre_jax.common.errors import DataError

KS = (1, 5, 10)
# Fewest images of the annotations a retrieval evaluates on when some are missing: R@k
# among a handful of images says nothing (2 of COCO's 5,000 gave "R@1 0.800").
MIN_IMAGES = 100


def coco_pairs(annotations_json):
  """COCO captions JSON -> ({image id: 12-digit id string}, [(image id, caption)])."""
  with open(annotations_json, encoding="utf-8") as f:
    data = json.load(f)
  try:
    ids = {im["id"]: f"{im['id']:012d}" for im in data["images"]}
    captions = [(a["image_id"], a["caption"].strip()) for a in data["annotations"]]
  except (KeyError, TypeError) as e:
    raise DataError(f"{annotations_json}: not a COCO captions file (missing {e})") from None
  unknown = [i for i, _ in captions if i not in ids]
  if unknown:
    raise DataError(f"{annotations_json}: {len(unknown)} captions name an image id that is not "
                    f"in 'images', e.g. {unknown[0]}")
  return ids, captions


def find_coco_images(images_dir, image_ids):
  """{image id: path} for the ids whose `<12 digits>.jpg` or `COCO_<split>_<12 digits>.jpg`
  is in `images_dir`."""
  by_digits = {}
  for name in os.listdir(images_dir):
    match = re.fullmatch(r"(?:COCO_[a-z]+\d*_)?(\d{12})\.jpg", name)
    if match:
      by_digits[match.group(1)] = os.path.join(images_dir, name)
  return {i: by_digits[d] for i, d in image_ids.items() if d in by_digits}


def flickr_pairs(karpathy_json, split="test"):
  """Karpathy split JSON (`images` with filename, split, sentences[].raw) ->
  ({filename: filename}, [(filename, caption)]) of one split."""
  with open(karpathy_json, encoding="utf-8") as f:
    data = json.load(f)
  try:
    images = [im for im in data["images"] if im["split"] == split]
    captions = [(im["filename"], s["raw"].strip()) for im in images for s in im["sentences"]]
  except (KeyError, TypeError) as e:
    raise DataError(f"{karpathy_json}: not a Karpathy split file (missing {e})") from None
  if not images:
    raise DataError(f"{karpathy_json}: no images of split {split!r}")
  return {im["filename"]: im["filename"] for im in images}, captions


def recall_at_k(text_emb, caption_image, image_emb, ks=KS, chunk=1024, geometry=sphere.SPHERE):
  """[C, D] captions, [C] image index of each caption, [M, D] images -> R@k both ways, and
  "items": each R@k's hits per query (`uncertainty.Items`).

  Image-to-text: an image's rank is that of its best-ranked caption.
  """
  t2i = similarity_ranks(text_emb, image_emb, caption_image, chunk, geometry)
  i2t = np.full(len(image_emb), np.iinfo(np.int64).max)
  for s in range(0, len(image_emb), chunk):
    sims = geometry.similarity(image_emb[s:s + chunk], text_emb)  # [m, C]
    # Rank of every caption of these images among all captions, min over each image's captions.
    caps = np.nonzero((caption_image >= s) & (caption_image < s + chunk))[0]
    ranks = ranks_of_targets(sims[caption_image[caps] - s], caps)
    np.minimum.at(i2t, caption_image[caps], ranks)
  out, items = {}, {}
  for k in ks:
    out[f"t2i_r@{k}"] = float((t2i < k).mean())
    out[f"i2t_r@{k}"] = float((i2t < k).mean())
    items[f"t2i_r@{k}"], items[f"i2t_r@{k}"] = uncertainty.hits(t2i < k), uncertainty.hits(i2t < k)
  return {**out, "items": items}  # items: captions (t2i) and images (i2t)


class Retrieval:
  """R@1/5/10 both ways on captions of images in a directory.

  `pairs`: (image key -> id string or file name, [(image key, caption)]) from coco_pairs or
  flickr_pairs. Images of the annotations that are missing from `images_dir` are an error
  naming how many and one, unless `allow_missing_images` (the result records the counts),
  and even then when fewer than `min_images` are present. Checked here, before anything
  is embedded.
  """

  def __init__(self, name, pairs, images_dir, allow_missing_images=False, min_images=MIN_IMAGES):
    self.name = name
    keys, captions = pairs
    if min_images < 1:
      raise DataError(f"min_images={min_images}: a retrieval needs at least 1 image")
    if not os.path.isdir(images_dir):
      subset = (" (../shared/hierarcaps/test_images holds a 1K subset of COCO)"
                if name.startswith("coco") else "")
      raise DataError(f"{images_dir}: no such image folder for {name}; pass --{name}_images"
                      f"{subset}, with --allow_missing_images for a part of the images")
    if name.startswith("coco"):
      paths = find_coco_images(images_dir, keys)
    else:
      paths = {k: os.path.join(images_dir, f) for k, f in keys.items()
               if os.path.exists(os.path.join(images_dir, f))}
    missing = [k for k in keys if k not in paths]
    if missing and not allow_missing_images:
      raise DataError(f"{images_dir}: {len(missing)} of the {len(keys)} images of the "
                      f"annotations are missing, e.g. {keys[missing[0]]!r}; pass "
                      "allow_missing_images to evaluate on the images present")
    if missing and len(keys) - len(missing) < min_images:
      raise DataError(f"{images_dir}: only {len(keys) - len(missing)} of the {len(keys)} images "
                      f"of the annotations are present, fewer than the minimum of {min_images} "
                      "for a meaningful R@k; add the images or lower min_images knowingly")
    self.images = [k for k in keys if k in paths]
    self.paths = [paths[k] for k in self.images]
    index = {k: i for i, k in enumerate(self.images)}
    kept = [(index[k], c) for k, c in captions if k in index]
    self.caption_image = np.array([i for i, _ in kept])
    self.captions = [c for _, c in kept]
    self.num_annotated_images = len(keys)

  def run(self, embedder):
    text_emb, _ = embedder.texts(self.captions)
    image_emb = embedder.images(self.paths, use="retrieval")
    return {**recall_at_k(text_emb, self.caption_image, image_emb, geometry=embedder.geometry),
            "num_images": len(self.images), "num_captions": len(self.captions),
            "num_annotated_images": self.num_annotated_images}


def _entry(name, title, files, pairs):
  """The registry entry of one retrieval benchmark: `pairs(annotations path)` gives its
  (image keys, captions); files: (annotations key, path parts), (images key, path parts)."""
  (annotations, _), (images, _) = files
  return registry.Entry(
      name, files=dict(files),
      build=lambda paths, options: Retrieval(name, pairs(paths[annotations]), paths[images],
                                             options["allow_missing_images"],
                                             options["min_images"]),
      columns=tuple((f"{title} T2I R@{k}" if k == 1 else f"R@{k}", f"{name}/t2i_r@{k}")
                    for k in KS),
      options=OPTIONS)


OPTIONS = (
    registry.Option("allow_missing_images", False, "Retrieval: evaluate on the images "
                    "present when the directory holds only part of the annotations' images "
                    "(the result records how many were used).", "bool"),
    registry.Option("min_images", MIN_IMAGES, "Retrieval with --allow_missing_images: refuse "
                    "fewer images than this.", "integer"))


registry.register(_entry("coco", "COCO", (("coco_captions", ("coco", "captions_val2017.json")),
                                          ("coco_images", ("coco", "val2017"))), coco_pairs))
registry.register(_entry("flickr30k", "Flickr30K",
                         (("flickr30k_json", ("flickr30k", "dataset_flickr30k.json")),
                          ("flickr30k_images", ("flickr30k", "flickr30k-images"))), flickr_pairs))
