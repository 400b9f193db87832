"""BREEDS pair scoring at entity13 size (273 labels, ~37K ordered pairs, 13,000 images,
20 alphas): the batched, chunked scoring of hierre_jax vs a per-image loop (a stable
argsort of every image's pair scores per alpha), side by side, on random unit embeddings
(the scoring does not depend on the tower). The loop runs on the first --loop_images
images (it is slow); its seconds for all images are extrapolated from its rate.

  python -m benchmarks.breeds_scoring [--images 13000] [--loop_images 300]
"""
import argparse
import time

import numpy as np

from benchmarks import common
from hierre_jax.evaluators import breeds


def loop_ranks(image_emb, label_emb, root, targets, alphas=breeds.ALPHAS):
  """One image at a time: score its pairs, sort them, find the correct pair's place."""
  x, y, ext = breeds.ordered_pairs(label_emb, root)
  pair_index = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(x, y))}
  ranks = np.full((len(alphas), len(image_emb)), len(x))
  for m, v in enumerate(image_emb):
    target = pair_index.get((int(targets[m, 0]), int(targets[m, 1])))
    if target is None:
      continue
    s = label_emb @ v
    for a, alpha in enumerate(alphas):
      order = np.argsort(-(s[x] + s[y] - alpha * ext), kind="stable")
      ranks[a, m] = int(np.nonzero(order == target)[0][0])
  return ranks


def unit(rng, shape):
  v = rng.normal(size=shape).astype(np.float32)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--images", type=int, default=13000)
  parser.add_argument("--labels", type=int, default=273)
  parser.add_argument("--loop_images", type=int, default=300)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  label_emb, image_emb = unit(rng, (args.labels, 512)), unit(rng, (args.images, 512))
  root = unit(rng, (512,))
  targets = rng.integers(0, args.labels, (args.images, 2))
  num_pairs = len(breeds.ordered_pairs(label_emb, root)[0])
  print(f"{args.images} images, {args.labels} labels, {num_pairs} ordered pairs, "
        f"{len(breeds.ALPHAS)} alphas")
  t = time.perf_counter()
  batched = breeds.pair_ranks(image_emb, label_emb, root, targets)
  batched_s = time.perf_counter() - t
  n = min(args.loop_images, args.images)
  t = time.perf_counter()
  looped = loop_ranks(image_emb[:n], label_emb, root, targets[:n])
  loop_s = (time.perf_counter() - t) * args.images / n
  # Equal up to float32 near-ties (the two compute the similarities in different orders).
  agree = (batched[:, :n] == looped).mean()
  print(f"ranks equal on {agree:.2%} of the {looped.size} (alpha, image) cases")
  common.row("", "seconds", "images/s", "speed-up")
  common.row(f"per-image loop (extrapolated from {n})", common.fmt(loop_s),
             common.fmt(args.images / loop_s), "1.00x")
  common.row("batched, chunked (hierre_jax)", common.fmt(batched_s),
             common.fmt(args.images / batched_s), common.speedup(loop_s, batched_s))


if __name__ == "__main__":
  main()
