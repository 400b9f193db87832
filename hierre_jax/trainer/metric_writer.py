"""Training metrics to JSON lines (metrics.jsonl) and TensorBoard event files."""
import json
import os


SUPERSEDED_FILE = "metrics_superseded.jsonl"


class MetricWriter:

  def __init__(self, workdir, resume_step=0):
    """Opens the writers. A run that starts at `resume_step` redoes the steps after it: the
    rows it will write again leave metrics.jsonl (which then holds one row per step of the
    run being continued) and are appended, each marked with `resumed_at`, to
    metrics_superseded.jsonl. No row is ever deleted."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = [line for line in f if line.strip()]
      later = [line for line in lines if json.loads(line)["step"] > resume_step]
      if later:
        with open(os.path.join(workdir, SUPERSEDED_FILE), "a") as f:
          f.writelines(json.dumps({**json.loads(line), "resumed_at": resume_step}) + "\n"
                       for line in later)
        kept = os.path.join(workdir, "metrics.jsonl.tmp")
        with open(kept, "w") as f:
          f.writelines(line for line in lines if json.loads(line)["step"] <= resume_step)
        os.replace(kept, self.path)  # atomic: a kill here leaves one whole file or the other
    # Imported here, not with the module: tensorboardX imports torch where it is installed
    # (a second at the start of every command, most of which never write metrics).
    import tensorboardX  # pylint: disable=import-outside-toplevel
    from tensorboardX.proto import summary_pb2  # pylint: disable=import-outside-toplevel
    self.summary_pb2 = summary_pb2
    self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                                  purge_step=resume_step + 1)

  def write(self, step, metrics):
    row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    # Scalar summaries written as they are, so that TensorBoard's tags are metrics.jsonl's
    # names: `add_scalar` would rewrite the '@' of 'eval/coco/i2t_r@1' to '_'.
    proto = self.summary_pb2
    summary = proto.Summary(value=[proto.Summary.Value(tag=k, simple_value=v)
                                   for k, v in row.items() if k != "step"])
    self.tensorboard._get_file_writer().add_summary(summary, step)  # pylint: disable=protected-access

  def close(self):
    self.tensorboard.close()


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
