"""Does RE order genericness differently in hyperbolic space than in flat space? (issue 41)

A MERU-shaped text tower trained from scratch with the RE loss only (configs/meru_scratch.py,
docs/scratch.md's budget) in two arms that share everything but the space: the same
random draws, data order and parameters, the tower's output alpha * projection taken as
  hyperbolic_origin  a tangent vector at MERU's origin, mapped onto the hyperboloid (c = 1,
                     frozen) by exp_map0: MERU's geometry, root the origin;
  flat_origin        a point of flat R^P itself (no exponential map), root the origin: the
                     flat control (`geometry.flat`);
  sphere             (not run by default) the release's CLIP baseline, root "".
Steps:
  1. split the training file by image: 10% of the images (seeded) become a validation set;
  2. tune the learning rate per arm on one seed (--tune_seed) over --lrs, choosing the
     highest validation tau_d (the test set is never looked at);
  3. train every arm at its learning rate with each of --seeds (paired: seed s draws the
     same weights and batches in both arms);
  4. measure each run on the test set: tau_d, order beyond length, the paper's controlled
     subsets, HyperLex rho, the held-out angle decisions (pos < neg) and the share of them
     that flip when the same vectors are read in the other arm's space, and the radius
     scale (the mean and 95th percentile of d(root, x) over the test texts);
  5. print each measure per arm (mean +- 95% t-interval over seeds) and the paired
     difference hyperbolic - flat with its interval, beside the length baselines; write all
     of it, per seed, to `--out`/study.json.
Each run is a workdir under `--out`; a killed study resumes where it stopped:

  python -m benchmarks.hyperbolic_study [--seeds 0 1 2 3 4] [--lrs 2.5e-4 5e-4 1e-3]
"""
import argparse
import csv
import gzip
import json
import os

import numpy as np
from scipy import stats

from configs import meru_scratch
from hierre_jax import embedding
from hierre_jax import loading
from hierre_jax import train
from hierre_jax.data import hierarcaps_csv
from hierre_jax.data.indexing import index_rows
from hierre_jax.evaluators import hyperlex
from hierre_jax.evaluators import length_control
from hierre_jax.geometry import flat
from hierre_jax.geometry import lorentz
from hierre_jax.models.clip import cleaned_tokenizer
from hierre_jax.radial import hierarchical_retrieval as hr
from hierre_jax.radial import losses

VARIANTS = {"hyperbolic_origin": dict(hyperbolic=True, flat=False, root="origin"),
            "flat_origin": dict(hyperbolic=True, flat=True, root="origin"),
            "sphere": dict(hyperbolic=False, flat=False, root="empty_string")}
VALIDATION_SHARE = 0.1


def split_by_image(train_csv, out):
  """Writes out/train_split.csv.gz and out/validation.csv.gz (the rows of a seeded 10% of
  the images) once -> their paths."""
  paths = tuple(os.path.join(out, n) for n in ("train_split.csv.gz", "validation.csv.gz"))
  if all(os.path.exists(p) for p in paths):
    return paths
  with gzip.open(train_csv, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  images = sorted({r["image_url"] for r in rows})
  held = set(np.random.default_rng(0).permutation(images)[:int(len(images) * VALIDATION_SHARE)])
  os.makedirs(out, exist_ok=True)
  for path, keep in zip(paths, (lambda r: r["image_url"] not in held,
                                lambda r: r["image_url"] in held)):
    with gzip.open(path + ".tmp", "wt", encoding="utf-8", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(r for r in rows if keep(r))
    os.replace(path + ".tmp", path)
  return paths


def run_config(variant, seed, lr, steps, train_csv, out):
  """configs/meru_scratch.py for one arm, seed (weights and data order) and learning rate;
  no evaluation inside the run (`measure` does it after)."""
  config = meru_scratch.get_config()
  v = VARIANTS[variant]
  config.random_init.options.hyperbolic = v["hyperbolic"]
  config.random_init.options.flat = v["flat"]
  config.seed = seed  # the weights' draws too (config.random_init.seed refers to it)
  config.root = v["root"]
  config.lr = lr
  config.total_steps = steps
  config.checkpoint_every = min(config.checkpoint_every, steps)
  config.train_csv = train_csv
  config.eval.test_csv = ""
  config.workdir = os.path.join(out, f"{variant}_lr{lr:g}_seed{seed}")
  return config


def tau_d(geometry, feats, root, row_index):
  """[R] each row's tau_d (release ties) of the radii of `feats` [N, P]."""
  radii = np.asarray(geometry.radius(feats, root), np.float64)
  return hr.kendall_tau_vs_order(radii[row_index]), radii


def other_space(model, feats):
  """(the geometry, the points) of `feats` read in the other arm's space: a hyperboloid
  point's tangent vector as a flat point; a flat point lifted onto the hyperboloid of the
  checkpoint's (frozen) curvature; (None, None) on the sphere, which has no counterpart."""
  if model.geometry.name == "sphere":
    return None, None
  if model.geometry.name == "lorentz":
    return flat.FLAT, model.geometry.chart(feats)
  c = float(np.exp(np.asarray(model.params["curv"], np.float64)))
  return lorentz.Lorentz(c), np.asarray(lorentz.Lorentz(c).lift(feats))


def measure(workdir, data):
  """The study's measures of the trained model in `workdir` (cached in
  workdir/study_measures.json)."""
  path = os.path.join(workdir, "study_measures.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  model = loading.load(workdir)  # its last checkpoint
  embedder = embedding.Embedder(model)
  g = model.geometry
  texts, row_index = index_rows(data["test"].positives)
  feats, root = embedder.texts(texts)
  tau, radii = tau_d(g, feats, root, row_index)
  beyond = length_control.tau_a_vs_order(
      length_control.residual_after_length(radii, data["tokens"])[row_index])
  result = {"tau_d": float(tau.mean()), "beyond_length": float(beyond.mean()),
            "radius_mean": float(radii.mean()), "radius_p95": float(np.percentile(radii, 95))}
  for name, mask in data["subsets"].items():
    result[f"subset/{name}/tau_d"] = float(tau[mask].mean())
  result["hyperlex_rho_all"] = data["hyperlex"].run(embedder)["rho_all"]
  held_texts, held_index = index_rows(data["heldout_rows"])
  held, root = embedder.texts(held_texts)
  p, q = (np.asarray(a) for a in losses.re_angles(held[held_index], root, geometry=g))
  result["heldout_pos_smaller"] = float((p < q).mean())
  g2, held2 = other_space(model, held)
  if g2 is not None:
    p2, q2 = (np.asarray(a) for a in losses.re_angles(held2[held_index], np.zeros_like(root),
                                                      geometry=g2))
    result["flip_rate"] = float(((p < q) != (p2 < q2)).mean())
  val_texts, val_index = index_rows(data["validation"].positives)
  val_feats, root = embedder.texts(val_texts)
  result["validation_tau_d"] = float(tau_d(g, val_feats, root, val_index)[0].mean())
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  os.replace(path + ".tmp", path)
  return result


def interval(values):
  """mean and the half-width of its 95% t-interval (0 for one value)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return float(values.mean()), 0.0
  half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
  return float(values.mean()), float(half)


def read_data(args, validation_csv):
  test = hierarcaps_csv.read_hierarchies(os.path.join(args.data_dir, "hierarcaps",
                                                       "hierarcaps_test.csv"))
  expanded = hierarcaps_csv.read_hierarchies(os.path.join(
      args.data_dir, "hierarcaps", "hierarcaps_test_expanded.csv.gz"))
  test_images = set(test.images)
  texts, row_index = index_rows(test.positives)
  tokens = length_control.token_counts(cleaned_tokenizer.bpe_tokenizer(), texts)  # MERU's
  words = length_control.word_counts(texts)
  return {"test": test, "validation": hierarcaps_csv.read_hierarchies(validation_csv),
          "heldout_rows": [p + n for p, n, image in zip(expanded.positives,
                                                        expanded.negatives, expanded.images)
                           if image in test_images],
          "tokens": tokens, "subsets": length_control.subset_masks(words[row_index]),
          "hyperlex": hyperlex.HyperLex(os.path.join(args.data_dir, "hyperlex",
                                                     "hyperlex-all.txt")),
          "baselines": {
              "tau_d": {"tokens": float(hr.kendall_tau_vs_order(
                            tokens[row_index].astype(np.float64)).mean()),
                        "words": float(hr.kendall_tau_vs_order(
                            words[row_index].astype(np.float64)).mean())},
              "beyond_length": {"tokens": 0.0}}}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
  parser.add_argument("--variants", nargs="+", default=["hyperbolic_origin", "flat_origin"],
                      choices=list(VARIANTS))
  parser.add_argument("--lrs", type=float, nargs="+", default=[2.5e-4, 5e-4, 1e-3])
  parser.add_argument("--tune_seed", type=int, default=100)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--data_dir", default="../shared")
  parser.add_argument("--out", default="workdirs/hyperbolic_study")
  args = parser.parse_args()
  train_csv, validation_csv = split_by_image(
      os.path.join(args.data_dir, "hierarcaps", "hierarcaps_coco_train.csv.gz"), args.out)
  data = read_data(args, validation_csv)
  lr_of, tuning = {}, {}
  for variant in args.variants:
    for lr in args.lrs:
      config = run_config(variant, args.tune_seed, lr, args.steps, train_csv, args.out)
      print(f"== tuning {variant}, lr {lr:g}: {config.workdir}", flush=True)
      train.train_and_export(config)
      tuning.setdefault(variant, {})[f"{lr:g}"] = measure(config.workdir, data)[
          "validation_tau_d"]
    lr_of[variant] = max(args.lrs, key=lambda lr: tuning[variant][f"{lr:g}"])
    print(f"{variant}: validation tau_d by lr {tuning[variant]} -> lr {lr_of[variant]:g}")
  runs = {}
  for seed in args.seeds:
    for variant in args.variants:
      config = run_config(variant, seed, lr_of[variant], args.steps, train_csv, args.out)
      print(f"== {variant}, seed {seed}, lr {lr_of[variant]:g}: {config.workdir}", flush=True)
      train.train_and_export(config)
      runs.setdefault(variant, []).append(measure(config.workdir, data))
  names = list(runs[args.variants[0]][0])
  table = {v: {m: dict(zip(("mean", "ci95"), interval([r[m] for r in rs])),
                       values=[r[m] for r in rs]) for m in names} for v, rs in runs.items()}
  paired = {}
  if {"hyperbolic_origin", "flat_origin"} <= set(runs):
    for m in names:
      diff = [a[m] - b[m] for a, b in zip(runs["hyperbolic_origin"], runs["flat_origin"])]
      paired[m] = dict(zip(("mean", "ci95"), interval(diff)), values=diff)
  with open(os.path.join(args.out, "study.json"), "w", encoding="utf-8") as f:
    json.dump({"seeds": args.seeds, "steps": args.steps, "lrs": args.lrs,
               "tune_seed": args.tune_seed, "tuning_validation_tau_d": tuning,
               "lr": lr_of, "results": table, "hyperbolic_minus_flat": paired,
               "baselines": data["baselines"]}, f, indent=1)
  print(f"\nseeds {args.seeds}, {args.steps} steps, lr {lr_of}; mean +- 95% t half-width; "
        f"length baselines {data['baselines']}")
  print("| measure | " + " | ".join(runs) + (" | hyperbolic - flat |" if paired else " |"))
  print("| --- " * (len(runs) + 1 + bool(paired)) + "|")
  for m in names:
    cells = [f"{table[v][m]['mean']:.3f} +- {table[v][m]['ci95']:.3f}" for v in runs]
    if paired:
      cells.append(f"{paired[m]['mean']:+.4f} +- {paired[m]['ci95']:.4f}")
    print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
