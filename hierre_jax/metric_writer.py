"""Training metrics to JSON lines (metrics.jsonl) and TensorBoard event files."""
import json
import os

import tensorboardX


class MetricWriter:

  def __init__(self, workdir, resume_step=0):
    """Opens the writers; on resume drops JSON rows past `resume_step` (work that is redone)."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(rows)
    self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                                  purge_step=resume_step + 1)

  def write(self, step, metrics):
    row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step":
        self.tensorboard.add_scalar(k, v, step)

  def close(self):
    self.tensorboard.close()


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
