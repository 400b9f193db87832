"""The suite's picture across models: HierarCaps tau_d against recall, a point per model
(ours filled, the paper's published rows hollow)."""
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


def tau_d_against_recall(results, papers, out_path):
  """results: our result dicts ("model", "family", metrics); papers: {name: metrics} ->
  a PNG at out_path, one legend entry per point; rows without both numbers are left out."""
  fig, ax = plt.subplots(figsize=(10, 5))
  ours = [(f"{short_name(r['model'])} ({r.get('family', '?')})", r, False) for r in results]
  for i, (name, row, hollow) in enumerate(ours + [(n, r, True) for n, r in papers.items()]):
    x, y = recall_of(row), row.get("hierarcaps/tau_d")
    if x is not None and isinstance(y, (int, float)):
      color = f"C{i % 10}"
      ax.scatter([x], [y], s=70, marker="s" if hollow else "o", label=name, linewidths=1.5,
                 facecolors="none" if hollow else color, edgecolors=color)
  ax.set_xlabel("HierarCaps recall")
  ax.set_ylabel("HierarCaps tau_d")
  ax.set_title("Hierarchy across models (filled: evaluated here; hollow squares: published)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)
  return out_path
