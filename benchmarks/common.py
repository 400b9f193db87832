"""Helpers shared by the benchmarks: timing and random HF checkpoints of real shapes."""
import os
import statistics
import time

import jax
import numpy as np

from hierre_jax.models.clip import random_init

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "hierarcaps")

def side_by_side(fns, repeats, warmup=1):
  """Interleaved wall seconds of several callables (each blocking until its result is
  ready): `warmup` calls of each, then `repeats` rounds calling each once, the order reversed
  every other round, so that load on the machine falls on both sides -> [len(fns), repeats]."""
  for fn in fns:
    for _ in range(warmup):
      fn()
  seconds = np.zeros((len(fns), repeats))
  for r in range(repeats):
    order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
    for k in order:
      t = time.perf_counter()
      fns[k]()
      seconds[k, r] = time.perf_counter() - t
  return seconds


def per_second(n, seconds):
  """'median (min-max)' of n items over each of [repeats] seconds."""
  rates = n / np.asarray(seconds)
  return f"{np.median(rates):,.1f} ({rates.min():,.1f}-{rates.max():,.1f})"


def ratio(slow, fast):
  """'median (min-max)x' of the round-by-round ratios slow / fast of two [repeats] seconds
  from `side_by_side` (above 1: `fast` is faster)."""
  r = np.asarray(slow) / np.asarray(fast)
  return f"{np.median(r):.2f}x ({r.min():.2f}-{r.max():.2f})"


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
  print(f"{name:<44}" + "".join(f"{v:>22}" for v in values))

def fmt(x):
  return f"{x:,.1f}" if isinstance(x, float) else str(x)

def speedup(a, b):
  return f"{a / b:.2f}x" if b else "-"



def compare_tower(fn, params, x, torch_call, repeats, device):
  """One tower both ways: jitted `fn(params, x)` (JAX) and `torch_call()` (a PyTorch forward
  returning features) -> (compile s, [repeats] JAX s, [repeats] PyTorch s, max |difference|
  of the unit features), timed interleaved (`side_by_side`) after a warm-up."""
  import torch  # pylint: disable=g-import-not-at-top
  fn = jax.jit(fn)
  start = time.perf_counter()
  got = np.asarray(jax.block_until_ready(fn(params, x)))
  compile_s = time.perf_counter() - start
  def torch_forward():
    with torch.inference_mode():
      out = torch_call()
    if device == "cuda":
      torch.cuda.synchronize()
    return getattr(out, "pooler_output", out)
  jax_s, torch_s = side_by_side([lambda: jax.block_until_ready(fn(params, x)), torch_forward],
                                repeats)
  want = torch_forward().cpu().numpy()
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  return compile_s, jax_s, torch_s, float(np.abs(unit(got) - unit(want)).max())


def tower_table(title, rows, step=None):
  """Prints `rows` of (name, batch, compile s, [repeats] JAX s, [repeats] PyTorch s, max
  diff): medians with (min-max) over the interleaved rounds; and an RE `step` row (rows per
  batch, steps, compile s, JAX rows/s, PyTorch rows/s)."""
  print(title)
  row("", "batch", "compile s", "hierre_jax/s", "PyTorch/s", "speed-up", "max |diff|")
  for name, n, compile_s, jax_s, torch_s, err in rows:
    row(f"{name} tower (texts or images/s)", n, f"{compile_s:.1f}", per_second(n, jax_s),
        per_second(n, torch_s), ratio(torch_s, jax_s), f"{err:.1e}")
  if step:
    n, steps, compile_s, jax_s, torch_s = step
    row(f"RE train step (rows/s, {steps} batches)", n, f"{compile_s:.1f}",
        per_second(n * steps, jax_s), per_second(n * steps, torch_s), ratio(torch_s, jax_s),
        "-")


def forward_flops(lengths, text_config, projection_dim):
  """Model FLOPs of one text tower forward pass over texts of `lengths` real tokens:
  layers x (8 T D^2 + 4 T D F + 4 T^2 D) + 2 D P per text (dense layers, attention scores
  and values, the projection)."""
  t = np.asarray(lengths, np.float64)
  d, f = text_config["hidden_size"], text_config["intermediate_size"]
  per_layer = 8 * t * d * d + 4 * t * d * f + 4 * t * t * d
  return float((text_config["num_hidden_layers"] * per_layer + 2 * d * projection_dim).sum())


def matmul_gflops(n=4096, repeats=3):
  """FLOP/s of an [n, n] x [n, n] fp32 matmul (XLA, the configured precision) / 1e9."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  seconds = time_calls(lambda: matmul(a).block_until_ready(), repeats)
  return 2 * n ** 3 / seconds / 1e9


def step_flops(lengths, text_config, projection_dim):
  """Model FLOPs of an RE step per row: forward and backward (3 x `forward_flops`) of its
  texts of `lengths` tokens ([rows, 8]) through the trained text tower; the root and the
  pull-back targets not counted."""
  return 3 * forward_flops(lengths, text_config, projection_dim) / len(lengths)


def step_floor(lengths, text_config, projection_dim, rows, jax_s, torch_s):
  """Prints the RE step's arithmetic floor beside both sides: `step_flops` of a row at the
  fp32 matmul rate measured now -> the rows/s no implementation on this machine beats, and
  the share of it each side's median reaches over `rows` rows a round."""
  per_row = step_flops(lengths, text_config, projection_dim)
  peak = matmul_gflops()
  floor = peak * 1e9 / per_row
  share = lambda seconds: rows / np.median(seconds) / floor
  print(f"RE step arithmetic floor: {per_row / 1e9:.1f} model GFLOPs per row at "
        f"{peak:.1f} GFLOP/s (XLA 4096^2 fp32 matmul, measured now) = {floor:.2f} rows/s; "
        f"hierre_jax at {share(jax_s):.0%} of it, PyTorch at {share(torch_s):.0%}")


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
