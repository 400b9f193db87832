"""Training curves from a workdir's metrics.jsonl as a PNG.

  python -m hierre_jax.trainer.curves WORKDIR [OUT.png]
"""
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from hierre_jax.trainer import metric_writer

PANELS = (("loss", ("loss", "loss_re", "loss_minimax", "loss_pullback")),
          ("mean exterior angle (rad)", ("angle_pos", "angle_neg")),
          ("HierarCaps tau_d", ("eval/tau_d",)))
CURVES_FILE = "curves.png"


def plot_training_curves(workdir, out=None, panels=PANELS):
  """Writes the curves of `workdir`'s metrics to `out` (default workdir/curves.png): one
  plot per (title, metric names) of `panels` (default RE's loss, angles and tau_d)."""
  rows = metric_writer.read_metrics(workdir)
  out = out or os.path.join(workdir, CURVES_FILE)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
  for ax, (title, keys) in zip(axes, panels):
    for key in keys:
      points = [(r["step"], r[key]) for r in rows if key in r]
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) < 5 else None, label=key)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  fig.suptitle(os.path.basename(os.path.normpath(workdir)))
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


if __name__ == "__main__":
  print(plot_training_curves(*sys.argv[1:3]))
