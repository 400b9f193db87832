"""Helpers shared by the benchmarks: timing and random HF checkpoints of real shapes."""
import os
import statistics
import time

import jax
import numpy as np

from hierre_jax.models.clip import random_init

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "hierarcaps")

def time_calls(fn, repeats, warmup=1):
  """Median wall seconds of `fn()` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)

def vit_b32_torch_checkpoint(out_dir, seed=0):
  """Random-weight ViT-B/32 `transformers.CLIPModel` saved to `out_dir` -> the torch model."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from hierre_jax.models.clip import tokenizer  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  config = transformers.CLIPConfig(**random_init.VIT_B32)
  model = transformers.CLIPModel(config).eval()
  model.save_pretrained(out_dir)
  tokenizer.write_clip_vocab(out_dir)
  return model

def row(name, *values):
  print(f"{name:<44}" + "".join(f"{v:>16}" for v in values))

def fmt(x):
  return f"{x:,.1f}" if isinstance(x, float) else str(x)

def speedup(a, b):
  return f"{a / b:.2f}x" if b else "-"



def compare_tower(fn, params, x, torch_call, repeats, device):
  """One tower both ways: jitted `fn(params, x)` (JAX) and `torch_call()` (a PyTorch forward
  returning features) -> (compile s, JAX s, PyTorch s, max |difference| of the unit
  features), medians of `repeats` after a warm-up."""
  import torch  # pylint: disable=g-import-not-at-top
  fn = jax.jit(fn)
  start = time.perf_counter()
  got = np.asarray(jax.block_until_ready(fn(params, x)))
  compile_s = time.perf_counter() - start
  jax_s = time_calls(lambda: jax.block_until_ready(fn(params, x)), repeats)
  def torch_forward():
    with torch.inference_mode():
      out = torch_call()
    if device == "cuda":
      torch.cuda.synchronize()
    return getattr(out, "pooler_output", out)
  torch_s = time_calls(torch_forward, repeats)
  want = torch_forward().cpu().numpy()
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  return compile_s, jax_s, torch_s, float(np.abs(unit(got) - unit(want)).max())


def tower_table(title, rows, step=None):
  """Prints `rows` of (name, batch, compile s, JAX s, PyTorch s, max diff) and an RE
  `step` row (rows per batch, steps, compile s, JAX rows/s, PyTorch rows/s)."""
  print(title)
  row("", "batch", "compile s", "hierre_jax/s", "PyTorch/s", "speed-up", "max |diff|")
  for name, n, compile_s, jax_s, torch_s, err in rows:
    row(f"{name} tower (texts or images/s)", n, f"{compile_s:.1f}", fmt(n / jax_s),
        fmt(n / torch_s), speedup(torch_s, jax_s), f"{err:.1e}")
  if step:
    n, steps, compile_s, jax_rps, torch_rps = step
    row(f"RE train step (rows/s, {steps} batches)", n, f"{compile_s:.1f}", fmt(jax_rps),
        fmt(torch_rps), speedup(jax_rps, torch_rps), "-")


def tower_and_step_args(parser):
  """The flags of a towers + RE step benchmark, parsed; JAX and torch set to fp32 at the
  highest matmul precision -> (args, torch device)."""
  import torch  # pylint: disable=g-import-not-at-top
  parser.add_argument("--text_batch", type=int, default=64)
  parser.add_argument("--image_batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=8, help="RE step: rows per batch")
  parser.add_argument("--steps", type=int, default=5, help="RE step: batches timed")
  parser.add_argument("--train_csv", default=os.path.join(SHARED, "hierarcaps_coco_train.csv.gz"))
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  return args, "cuda" if torch.cuda.is_available() else "cpu"


def step_rows(train_csv, batch_size, steps):
  """The first batch_size x steps HierarCaps rows of `train_csv` (the bundled sample where
  it is absent): one epoch of them, every step a new batch."""
  from hierre_jax.data import hierarcaps_csv  # pylint: disable=g-import-not-at-top
  if not os.path.exists(train_csv):
    train_csv = os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                             "hierarcaps_sample.csv")
  data = hierarcaps_csv.read_hierarchies(train_csv)
  n = batch_size * steps
  return hierarcaps_csv.Hierarchies(data.positives[:n], data.negatives[:n], data.images[:n])
