"""Helpers shared by the benchmarks: timing and random HF checkpoints of real shapes."""
import os
import statistics
import time

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

