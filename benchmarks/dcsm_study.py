"""The offline DCSM study's tables and learning curves (docs/dcsm.md), from the workdirs of
`bash launch/dcsm_study.sh`: for each run (the baseline backbone, the grounded one, the
grounded one with the token column rule) and test set, the
global cosine and DCSM per seed, their mean +- sd and 95% t-interval over seeds, and the
paired (same seed, same items) difference DCSM - cosine with its t-interval; each seed's
cell with its 95% Wilson interval over items; the training-format pair accuracies, the
step chosen on validation, the negation picks and the localisation diagnostic; and the
learning curves as one figure.

  python -m benchmarks.dcsm_study --out docs/dcsm_study.json --curves docs/dcsm_curves.png
  python -m benchmarks.dcsm_study --continued grounded_0_6000 grounded_2_9000  # continued runs
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from scipy import stats  # pylint: disable=wrong-import-position

from benchmarks import dcsm_diagnostics  # pylint: disable=wrong-import-position
from hierre_jax.dcsm import procedural  # pylint: disable=wrong-import-position
from hierre_jax.trainer import metric_writer  # pylint: disable=wrong-import-position

# run -> the infix of its workdirs/shapes_dcsm_{infix}{seed} (launch/dcsm_shapes.sh)
RUNS = {"baseline": "", "grounded": "grounded_", "grounded, token rule": "grounded_token_"}
TESTS = ("procedural_spatial", "procedural_spatial_unseen", "procedural_spatial_swap",
         "procedural_colour", "procedural_colour_unseen", "procedural_negation",
         "procedural_negation_present")
SCORERS = ("global_cosine", "dcsm")


def wilson(p, n, z=1.96):
  """95% Wilson interval of a proportion p of n items -> (low, high)."""
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return centre - half, centre + half


def over_seeds(values, low=-np.inf, high=np.inf):
  """-> {mean, sd, ci95: the t-interval of the mean (clipped to [low, high]), per_seed}."""
  values = np.asarray(values, float)
  mean, sd = values.mean(), values.std(ddof=1)
  half = stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values))
  return {"mean": mean, "sd": sd, "ci95": [max(low, mean - half), min(high, mean + half)],
          "per_seed": values.tolist()}


def run_dir(run, seed):
  return f"workdirs/shapes_dcsm_{RUNS[run]}{seed}"


def collect(seeds):
  out = {}
  for run in RUNS:
    dirs = {s: run_dir(run, s) for s in seeds}
    results = {s: json.load(open(os.path.join(d, "evaluation", "results.json")))["benchmarks"]
               for s, d in dirs.items()}
    diagnostics = {s: json.load(open(os.path.join(d, "diagnostics.json")))
                   for s, d in dirs.items()}
    summaries = {s: json.load(open(os.path.join(d, "train_summary.json")))
                 for s, d in dirs.items()}
    tests = {}
    for name in TESTS:
      row = {"items": results[seeds[0]][name]["items_used"],
             "chance": results[seeds[0]][name]["global_cosine"]["chance"]}
      for label in SCORERS:
        accuracies = [results[s][name][label]["accuracy"] for s in seeds]
        row[label] = over_seeds(accuracies, 0.0, 1.0)
        row[label]["wilson95_per_seed"] = [wilson(a, row["items"]) for a in accuracies]
      row["dcsm_minus_cosine"] = over_seeds(
          [results[s][name]["dcsm"]["accuracy"] - results[s][name]["global_cosine"]["accuracy"]
           for s in seeds])
      tests[name] = row
    pairs = {key: over_seeds([diagnostics[s]["hard_negative_pairs"][key] for s in seeds], 0.0,
                             1.0)
             for key in diagnostics[seeds[0]]["hard_negative_pairs"]}
    out[run] = {
        "tests": tests, "pairs": pairs,
        "chosen": {s: summaries[s]["chosen"] for s in seeds},
        "scorer_step_seconds": {s: summaries[s]["seconds"].get("steps") for s in seeds},
        "localisation": {s: diagnostics[s]["localisation"] for s in seeds},
        "negation_picks": {s: diagnostics[s]["negation_picks"] for s in seeds}}
  return out


def pct(x):
  return f"{100 * x:.1f}"


def interval(cell):
  low, high = cell["ci95"]
  return f"{pct(cell['mean'])} ± {pct(cell['sd'])} [{pct(low)}, {pct(high)}]"


def tables(study, seeds):
  lines = []
  for run, b in study.items():
    lines += [f"### {run}: accuracy %, mean ± sd [95% t-interval] over seeds "
              f"{', '.join(map(str, seeds))}", "",
              "| test set (items) | chance | cosine | DCSM | DCSM - cosine | per seed: cosine "
              "/ DCSM |", "|---|---|---|---|---|---|"]
    for name, row in b["tests"].items():
      seeds_text = ", ".join(f"{pct(c)} / {pct(d)}" for c, d in zip(
          row["global_cosine"]["per_seed"], row["dcsm"]["per_seed"]))
      lines.append(f"| `{name}` ({row['items']}) | {pct(row['chance'])} | "
                   f"{interval(row['global_cosine'])} | {interval(row['dcsm'])} | "
                   f"{interval(row['dcsm_minus_cosine'])} | {seeds_text} |")
    lines += ["", f"{run}: pair accuracy in the training format % (100 pairs per set, "
              "both caption versions, 400 items; chance 50)", "",
              "| pairs | cosine | DCSM |", "|---|---|---|"]
    for split in ("train", "val"):
      for name in procedural.DATASETS:
        lines.append(f"| {split} {name} | {interval(b['pairs'][f'{split}/{name}/global_cosine'])}"
                     f" | {interval(b['pairs'][f'{split}/{name}/dcsm'])} |")
    chosen = ", ".join(f"seed {s}: step {c['step']} ({pct(c['validation_mean_pair_accuracy'])})"
                       for s, c in b["chosen"].items())
    lines += ["", f"{run}: step chosen on validation (mean validation pair accuracy %): "
              f"{chosen}", ""]
  lines += ["| run | localisation: images where the word's cell is the most similar, % |",
            "|---|---|"]
  lines += [f"| {run} | " + ", ".join(f"{pct(b['localisation'][s]['inside_higher'])}"
                                      for s in seeds) + " |" for run, b in study.items()]
  for name, kinds in dcsm_diagnostics.KINDS.items():
    lines += ["", f"`{name}`: % of items where each caption kind scored highest, seeds "
              f"{' / '.join(map(str, seeds))}", "",
              "| run | scorer | " + " | ".join(kinds) + " |",
              "|---|---|" + "---|" * len(kinds)]
    for run, b in study.items():
      for label in SCORERS:
        picks = [b["negation_picks"][s][name][label] for s in seeds]
        lines.append(f"| {run} | {label} | " + " | ".join(
            " / ".join(pct(p[kind]) for p in picks) for kind in kinds) + " |")
  return "\n".join(lines)


def continued_table(continued):
  """The runs continued past the study's steps (workdirs/shapes_dcsm_{name}, a copy of a
  study run resumed with a larger total_steps): per test set the cosine, DCSM at the
  study's steps and DCSM continued, each seed's; and the steps chosen on validation."""
  lines = ["| test set | " + " | ".join(f"{n}: cosine / DCSM study / DCSM continued"
                                        for n in continued) + " |",
           "|---|" + "---|" * len(continued)]
  results = {}
  for name in continued:
    study_run = name.rsplit("_", 1)[0]  # e.g. grounded_2_9000 -> grounded_2
    results[name] = [json.load(open(os.path.join(f"workdirs/shapes_dcsm_{run}", "evaluation",
                                                  "results.json")))["benchmarks"]
                     for run in (study_run, name)]
  for test in TESTS:
    lines.append(f"| `{test}` | " + " | ".join(
        f"{pct(study[test]['global_cosine']['accuracy'])} / {pct(study[test]['dcsm']['accuracy'])}"
        f" / {pct(more[test]['dcsm']['accuracy'])}" for study, more in results.values()) + " |")
  for name in continued:
    with open(os.path.join(f"workdirs/shapes_dcsm_{name}", "train_summary.json")) as f:
      chosen = json.load(f)["chosen"]
    with open(os.path.join(f"workdirs/shapes_dcsm_{name}", "diagnostics.json")) as f:
      pairs = json.load(f)["hard_negative_pairs"]
    lines.append(f"\n{name}: step chosen {chosen['step']} (mean validation pair accuracy "
                 f"{pct(chosen['validation_mean_pair_accuracy'])}); DCSM spatial pairs train "
                 f"{pct(pairs['train/spatial/dcsm'])}, val {pct(pairs['val/spatial/dcsm'])}")
  return "\n".join(lines)


def continued_curves(continued, out):
  """Pair accuracy against step of the continued runs: a panel per set, a colour per run,
  validation solid, the first 100 training pairs dashed."""
  fig, axes = plt.subplots(1, len(procedural.DATASETS), figsize=(13, 3.6), sharey=True)
  for ax, name in zip(axes, procedural.DATASETS):
    for k, run in enumerate(continued):
      rows = metric_writer.read_metrics(f"workdirs/shapes_dcsm_{run}")
      for split, style in (("val", "-"), ("train", "--")):
        key = f"{split}/{name}/pair_accuracy"
        steps, values = zip(*[(r["step"], r[key]) for r in rows if key in r])
        ax.plot(steps, values, style, color=f"C{k}", label=f"{run} {split}")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_title(name)
    ax.set_xlabel("scorer step")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("pair accuracy")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def curves(seeds, out):
  """Pair accuracy against step: a row per run, a column per set; validation solid,
  the first 100 training pairs dashed, the global cosine's validation pair accuracy
  dotted, a colour per seed."""
  fig, axes = plt.subplots(len(RUNS), len(procedural.DATASETS), figsize=(13, 9.5),
                           sharex=True, sharey=True)
  for row, run in zip(axes, RUNS):
    for ax, name in zip(row, procedural.DATASETS):
      for k, seed in enumerate(seeds):
        rows = metric_writer.read_metrics(run_dir(run, seed))
        for split, style in (("val", "-"), ("train", "--")):
          points = [(r["step"], r[f"{split}/{name}/pair_accuracy"]) for r in rows
                    if f"{split}/{name}/pair_accuracy" in r]
          steps, values = zip(*points)
          ax.plot(steps, values, style, color=f"C{k}",
                  label=f"seed {seed} {split}" if name == procedural.DATASETS[0] else None)
        with open(os.path.join(run_dir(run, seed), "diagnostics.json")) as f:
          cosine = json.load(f)["hard_negative_pairs"][f"val/{name}/global_cosine"]
        ax.axhline(cosine, ls=":", color=f"C{k}", lw=1,
                   label=f"seed {seed} cosine, val" if name == procedural.DATASETS[0] else None)
      ax.axhline(0.5, color="grey", lw=0.8)
      ax.set_title(f"{run}: {name}")
      ax.grid(alpha=0.3)
  for ax in axes[-1]:
    ax.set_xlabel("scorer step")
  for row in axes:
    row[0].set_ylabel("pair accuracy")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--out", default="", help="the study's numbers as JSON")
  parser.add_argument("--curves", default="", help="the learning curves' figure (.png)")
  parser.add_argument("--continued", nargs="*", default=[], help="runs continued past the "
                      "study's steps, as workdirs/shapes_dcsm_NAME: e.g. grounded_2_9000")
  args = parser.parse_args()
  if args.continued:
    print(continued_table(args.continued))
    if args.curves:
      print(continued_curves(args.continued, args.curves))
    return
  study = collect(args.seeds)
  print(tables(study, args.seeds))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(study, f, indent=1)
  if args.curves:
    print(curves(args.seeds, args.curves))


if __name__ == "__main__":
  main()
