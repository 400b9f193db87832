"""End-to-end HierarCaps evaluation time with a random ViT-B/32 CLIP, by stage, and the
batched retrieval stage vs a per-image Python loop, side by side.

  python -m benchmarks.evaluation_time [--data_dir ../shared/hierarcaps]
"""
import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks import common
from hierre_jax import loading
from hierre_jax.data import hierarcaps_csv
from hierre_jax.data import indexing
from hierre_jax.evaluators import hierarcaps
from hierre_jax.models.clip import random_init
from hierre_jax.geometry import sphere
from hierre_jax.radial import hierarchical_retrieval as hr


def loop_retrieve(text_emb, radii, image_emb, num_levels=hr.NUM_LEVELS):
  """Per-image, per-level loop: the straightforward implementation."""
  levels = hr.radius_levels(radii, num_levels)
  preds = np.empty((len(image_emb), num_levels), np.int64)
  for m, v in enumerate(image_emb):
    sims = text_emb @ v
    for l, t in enumerate(levels):
      preds[m, l] = np.argmax(np.where(radii <= t, sims, -np.inf))
  return preds


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--data_dir", default=common.SHARED)
  args = parser.parse_args()
  test_csv = os.path.join(args.data_dir, "hierarcaps_test.csv")
  images_dir = os.path.join(args.data_dir, "test_images")

  d = tempfile.mkdtemp()
  v = random_init.VIT_B32
  random_init.write_random_clip(d, v["text_config"], v["vision_config"], v["projection_dim"])
  embedder = loading.embedder(d, text_batch_size=256, image_batch_size=64)
  start = time.perf_counter()
  result = hierarcaps.evaluate_hierarcaps(embedder, test_csv, images_dir)
  total = time.perf_counter() - start
  sec = result["seconds"]

  # The retrieval stage alone, on the same embeddings, batched vs loop.
  data = hierarcaps_csv.read_hierarchies(test_csv)
  candidates = indexing.distinct(t for row in data.positives for t in row)
  text_emb, root = embedder.texts(candidates)
  rng = np.random.default_rng(0)
  image_emb = rng.normal(size=(len(set(data.images)), text_emb.shape[1])).astype(np.float32)
  image_emb /= np.linalg.norm(image_emb, axis=1, keepdims=True)
  radii = np.asarray(sphere.radius(text_emb, root))
  batched = common.time_calls(lambda: hr.retrieve(text_emb, radii, image_emb), repeats=3)
  start = time.perf_counter()
  loop_preds = loop_retrieve(text_emb, radii, image_emb)
  loop = time.perf_counter() - start
  same = np.array_equal(loop_preds, hr.retrieve(text_emb, radii, image_emb))

  print(f"HierarCaps test set ({result['num_images']} images, {result['num_candidates']} "
        "distinct texts, 50 radii), random ViT-B/32 on this machine")
  common.row("stage", "seconds")
  common.row("embed texts (+ root)", f"{sec['embed_texts']:.2f}")
  common.row("embed images (decode, preprocess, ViT)", f"{sec['embed_images']:.2f}")
  common.row("retrieval + metrics (first call: compile)", f"{sec['retrieval']:.2f}")
  common.row("end to end", f"{total:.2f}")
  print()
  common.row("retrieval stage, 1000 images x 50 radii", "seconds", "speed-up")
  common.row("batched prefix-scan (hierre_jax)", f"{batched:.3f}", common.speedup(loop, batched))
  common.row("per-image, per-level Python loop", f"{loop:.3f}", "1.00x")
  print(f"identical predictions: {same}")


if __name__ == "__main__":
  main()
