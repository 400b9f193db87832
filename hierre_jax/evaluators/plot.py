"""The suite's picture across models: HierarCaps tau_d against recall, a point per model
(ours filled, the paper's published rows hollow), and each model's mean radius by depth
with its 95% interval."""
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

# Recall of a model evaluated with MERU's traversal, where the levels' recall is absent.
RECALL_KEYS = ("hierarcaps/recall", "hierarcaps/traversal/recall")


def recall_of(row):
  return next((row[k] for k in RECALL_KEYS if isinstance(row.get(k), (int, float))), None)


def short_name(model):
  """The last two components of a model path (a hub id as it is)."""
  return "/".join(os.path.normpath(model).split(os.sep)[-2:])


def results(results, papers, out_path):
  """results: our result dicts ("model", "family", metrics); papers: {name: metrics} ->
  a PNG at out_path: tau_d against recall (one legend entry per point; rows without both
  numbers left out) beside mean radius against depth per model (with its interval)."""
  fig, (ax, depth_ax) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 2]})
  ours = [(f"{short_name(r['model'])} ({r.get('family', '?')})", r, False) for r in results]
  for i, (name, row, hollow) in enumerate(ours + [(n, r, True) for n, r in papers.items()]):
    x, y = recall_of(row), row.get("hierarcaps/tau_d")
    if x is not None and isinstance(y, (int, float)):
      color = f"C{i % 10}"
      ax.scatter([x], [y], s=70, marker="s" if hollow else "o", label=name, linewidths=1.5,
                 facecolors="none" if hollow else color, edgecolors=color)
  baseline = next((r["hierarcaps/baseline/tokens/tau_d"] for r in results
                   if "hierarcaps/baseline/tokens/tau_d" in r), None)
  if baseline is not None:
    ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
               label=f"token count alone, no model ({baseline:.3f})")
  ax.set_xlabel("HierarCaps recall")
  ax.set_ylabel("HierarCaps tau_d")
  ax.set_title("Hierarchy across models (filled: evaluated here; hollow squares: published)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  depths = (1, 2, 3, 4)
  for i, (name, row, _) in enumerate(ours):
    keys = [f"hierarcaps/depth/{d}/mean_radius" for d in depths]
    if not all(isinstance(row.get(k), (int, float)) for k in keys):
      continue
    means = [row[k] for k in keys]
    cis = [row.get(f"{k}_ci95") or [m, m] for k, m in zip(keys, means)]
    depth_ax.errorbar(depths, means, yerr=[[m - c[0] for m, c in zip(means, cis)],
                                           [c[1] - m for m, c in zip(means, cis)]],
                      marker="o", capsize=3, color=f"C{i % 10}", label=name)
  depth_ax.set_xticks(depths)
  depth_ax.set_xlabel("HierarCaps depth (1: most general)")
  depth_ax.set_ylabel("mean radius (the model's geometry)")
  depth_ax.set_title("Radius by depth (95% intervals over rows)")
  depth_ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)
  return out_path
