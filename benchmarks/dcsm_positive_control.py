"""DCSM's scorer on ideal synthetic maps whose answer is known: can it learn spatial order
at all, and how many steps does it need? (the positive control of docs/dcsm.md)

Each item is two shapes of a 4 x 4 patch grid, the first above the second, and the caption
"a picture of a {first} above a {second}". Its ideal map (17 rows: the class token and the
16 patches; 30 columns: the caption's tokens) holds 1 where a shape's word column meets the
patch of that shape, 0 elsewhere, plus Gaussian noise of `--noise`; the swapped caption
("... a {second} above a {first}") is the same map with the two word columns exchanged.
The only cue is which word's patch lies higher. The project's scorer (`dcsm.scorer.Scorer`,
the release's CNN, dropout 0.1) is trained with Adam at the release's 1e-3 on batches of
`--batch` items, each map z-scored over the item's two maps as evaluation does, by a 2-way
cross-entropy between the caption and its swap. Test items are new placements of shape
pairs never trained on (a map does not show which shape a column names, so they differ from
training items in their placements only). Printed and written to `--out` (JSON): the swap accuracy
(the caption scored above its swap) on 400 training items and 400 items of unseen pairs
at each checkpoint step, per noise level and seed, mean +- sd over seeds.

  python -m benchmarks.dcsm_positive_control [--noise 0.1 0.3 1.0] [--seeds 0 1 2]
"""
import argparse
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hierre_jax.dcsm import maps
from hierre_jax.dcsm import scorer as scorer_lib

GRID, COLUMNS, SHAPES = 4, 30, 6
FIRST, SECOND = 5, 8  # the shape words' columns: "<sot> a picture of a {1} above a {2} <eot>"
TEST_PAIRS = ((0, 1), (2, 5), (3, 4))  # unordered shape pairs held out of training


def items(rng, pairs, n):
  """n items of shape pairs drawn from `pairs`: (first, second) cells with the first above."""
  out = []
  for _ in range(n):
    a, b = pairs[rng.integers(len(pairs))]
    if rng.random() < 0.5:
      a, b = b, a
    top_row = rng.integers(GRID - 1)
    cells = (top_row * GRID + rng.integers(GRID),
             rng.integers(top_row + 1, GRID) * GRID + rng.integers(GRID))
    out.append(cells)
  return np.asarray(out)


def item_maps(cells, noise, rng):
  """[N, 2] cells -> [N, 2, 17, 30] maps of the caption and of its swap, z-scored per item
  over its two maps."""
  n = len(cells)
  ideal = np.zeros((n, 1 + GRID * GRID, COLUMNS), np.float32)
  ideal[np.arange(n), 1 + cells[:, 0], FIRST] = 1.0
  ideal[np.arange(n), 1 + cells[:, 1], SECOND] = 1.0
  ideal += rng.normal(0, noise, ideal.shape).astype(np.float32)
  swapped = ideal.copy()
  swapped[:, :, [FIRST, SECOND]] = ideal[:, :, [SECOND, FIRST]]
  both = np.stack([ideal, swapped], axis=1)
  return np.asarray(jax.vmap(maps.standardize)(jnp.asarray(both)))


def train(noise, seed, steps, batch, checkpoints):
  rng = np.random.default_rng(seed)
  all_pairs = list(itertools.combinations(range(SHAPES), 2))
  train_pairs = [p for p in all_pairs if p not in TEST_PAIRS]
  eval_sets = {"train": item_maps(items(rng, train_pairs, 400), noise, rng),
               "test": item_maps(items(rng, list(TEST_PAIRS), 400), noise, rng)}
  model = scorer_lib.Scorer()
  params = scorer_lib.init_params(1 + GRID * GRID, COLUMNS, seed)
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  def loss_fn(p, m, key):
    scores = model.apply({"params": p}, m.reshape(-1, *m.shape[2:]), train=True,
                         rngs={"dropout": key}).reshape(m.shape[:2])
    return optax.softmax_cross_entropy_with_integer_labels(scores, jnp.zeros(len(m), int)).mean()

  @jax.jit
  def step(p, o, m, key):
    loss, grads = jax.value_and_grad(loss_fn)(p, m, key)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss

  @jax.jit
  def accuracy(p, m):
    scores = model.apply({"params": p}, m.reshape(-1, *m.shape[2:])).reshape(m.shape[:2])
    return (scores[:, 0] > scores[:, 1]).mean()

  curve = {}
  train_items = items(rng, train_pairs, steps * batch)  # each item seen once
  for s in range(steps + 1):
    if s in checkpoints:
      curve[s] = {k: float(accuracy(params, v)) for k, v in eval_sets.items()}
    if s < steps:
      m = item_maps(train_items[s * batch:(s + 1) * batch], noise, rng)
      params, opt_state, _ = step(params, opt_state, jnp.asarray(m),
                                  jax.random.key(seed * 100_003 + s))
  return curve


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3, 1.0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--out", default="workdirs/dcsm_positive_control.json")
  args = parser.parse_args()
  checkpoints = sorted({s for s in (0, 100, 300, 600, 1000, 1500, 2000) if s < args.steps}
                       | {args.steps})
  results = {f"{noise:g}": {seed: train(noise, seed, args.steps, args.batch, checkpoints)
                            for seed in args.seeds} for noise in args.noise}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump({"steps": args.steps, "batch": args.batch, "seeds": args.seeds,
               "test_pairs": TEST_PAIRS, "swap_accuracy": results}, f, indent=1)
  print(f"swap accuracy, mean +- sd over seeds {args.seeds} (batch {args.batch}); "
        "train items / items of unseen shape pairs")
  print("| noise | " + " | ".join(f"step {s}" for s in checkpoints) + " |")
  print("| --- " * (len(checkpoints) + 1) + "|")
  for noise, by_seed in results.items():
    cells = []
    for s in checkpoints:
      tr = np.array([by_seed[seed][s]["train"] for seed in args.seeds])
      te = np.array([by_seed[seed][s]["test"] for seed in args.seeds])
      cells.append(f"{tr.mean():.3f} +- {tr.std(ddof=1) if len(tr) > 1 else 0:.3f} / "
                   f"{te.mean():.3f} +- {te.std(ddof=1) if len(te) > 1 else 0:.3f}")
    print(f"| {noise} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
