"""Does RE in hyperbolic space order genericness as well as on the sphere? (issue 29)

Trains configs/meru_scratch.py (a MERU-shaped text tower from scratch with the RE loss,
docs/scratch.md's budget: 2000 steps of 16 HierarCaps training rows) once per variant and
seed, then prints tau_d and the held-out angle statistics before and after, each as the
mean over seeds with a 95% t-interval, and writes them to `--out`/study.json:

  sphere                   the release's CLIP baseline (same towers, no curvature), root ""
  hyperbolic_origin        MERU's Lorentz geometry, root its origin (MERU's mapping)
  hyperbolic_empty_string  MERU's Lorentz geometry, root the lifted embedding of ""

Each run is a workdir under `--out` (a killed study resumes where it stopped):

  python -m benchmarks.hyperbolic_study [--seeds 0 1 2] [--variants ...] [--steps 2000]
"""
import argparse
import json
import os

import numpy as np
from scipy import stats

from configs import meru_scratch
from hierre_jax import train

VARIANTS = {"sphere": dict(hyperbolic=False, root="empty_string"),
            "hyperbolic_origin": dict(hyperbolic=True, root="origin"),
            "hyperbolic_empty_string": dict(hyperbolic=True, root="empty_string")}
METRICS = (("tau_d",), ("heldout", "angle_pos_mean"), ("heldout", "angle_neg_mean"),
           ("heldout", "pos_smaller_than_neg"))


def run_config(variant, seed, steps, out):
  """configs/meru_scratch.py for one variant and seed (weights and data order)."""
  config = meru_scratch.get_config()
  config.random_init.options.hyperbolic = VARIANTS[variant]["hyperbolic"]
  config.random_init.seed = seed
  config.seed = seed
  config.root = VARIANTS[variant]["root"]
  config.total_steps = steps
  config.checkpoint_every = min(config.checkpoint_every, steps)
  config.workdir = os.path.join(out, f"{variant}_seed{seed}")
  return config


def value(result, keys):
  for k in keys:
    result = result[k]
  return float(result)


def interval(values):
  """mean and the half-width of its 95% t-interval (0 for one value)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float(values.mean()), 0.0
  half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
  return float(values.mean()), float(half)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--out", default="workdirs/hyperbolic_study")
  args = parser.parse_args()
  results = {}
  for variant in args.variants:
    for seed in args.seeds:
      config = run_config(variant, seed, args.steps, args.out)
      print(f"== {variant}, seed {seed}: {config.workdir}", flush=True)
      train.train_and_export(config)
      for step in (0, args.steps):
        with open(os.path.join(config.workdir, f"eval_step_{step}.json")) as f:
          result = json.load(f)
        for keys in METRICS:
          name = ".".join(keys)
          results.setdefault(variant, {}).setdefault(name, {}).setdefault(step, []).append(
              value(result, keys))
  table = {v: {m: {s: dict(zip(("mean", "ci95"), interval(x)), values=x)
                   for s, x in by_step.items()} for m, by_step in by_metric.items()}
           for v, by_metric in results.items()}
  with open(os.path.join(args.out, "study.json"), "w") as f:
    json.dump({"seeds": args.seeds, "steps": args.steps, "results": table}, f, indent=1)
  print(f"\nseeds {args.seeds}, {args.steps} steps; mean +- 95% t-interval half-width")
  print("| variant | metric | before | after |\n| --- | --- | --- | --- |")
  for v, by_metric in table.items():
    for m, by_step in by_metric.items():
      cells = [f"{by_step[s]['mean']:.3f} +- {by_step[s]['ci95']:.3f}" for s in (0, args.steps)]
      print(f"| {v} | {m} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
  main()
