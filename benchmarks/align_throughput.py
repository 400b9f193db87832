"""ALIGN throughput: jitted Flax towers and the RE train step vs transformers' AlignModel
in PyTorch.

align-base shapes (BERT-base text tower, EfficientNet-B7 image tower; the offline
WordPiece vocabulary holds the words of the training rows used, so the word-embedding
table is small, which changes no throughput), random weights re-drawn so that features
carry signal; the towers on texts of 64 tokens and images of 289 x 289; the RE step of
configs/align_base.py (packed texts, pull-back cache) against the PyTorch step padded to
the longest text with its attention mask (`benchmarks/re_step.py`), on HierarCaps training
rows; same machine, one run:

  python -m benchmarks.align_throughput [--text_batch 64] [--image_batch 8] [--repeats 3]
      [--batch_size 8] [--steps 5]
"""
import argparse
import os
import re
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from benchmarks import common
from benchmarks import re_step
from configs import align_base
from hierre_jax import models
from hierre_jax import sharding
from hierre_jax.data import hierarcaps_csv
from hierre_jax.models.align import random_init

BASE_TEXT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
BASE_VISION = dict(image_size=289, hidden_dim=640, depthwise_padding=[])


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--text_batch", type=int, default=64)
  parser.add_argument("--image_batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=8, help="RE step: rows per batch")
  parser.add_argument("--steps", type=int, default=5, help="RE step: batches timed")
  parser.add_argument("--train_csv", default=os.path.join(common.SHARED,
                                                          "hierarcaps_coco_train.csv.gz"))
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if not os.path.exists(args.train_csv):
    args.train_csv = os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                  "hierarcaps_sample.csv")
  data = hierarcaps_csv.read_hierarchies(args.train_csv)
  rows = args.batch_size * args.steps  # one epoch of these rows: every step a new batch
  data = hierarcaps_csv.Hierarchies(data.positives[:rows], data.negatives[:rows],
                                    data.images[:rows])
  words = re.findall(r"[a-z0-9]+", " ".join(t for row in data.positives + data.negatives
                                             for t in row).lower())
  d = tempfile.mkdtemp()
  random_init.write_random_align(d, BASE_TEXT, BASE_VISION, 640, words=list(dict.fromkeys(words)))
  model = models.load(d)
  config, params = model.config, model.params
  torch_model = transformers.AlignModel.from_pretrained(d).eval().to(device)
  rng = np.random.default_rng(0)
  ids = rng.integers(104, config.text.vocab_size, (args.text_batch, 64)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  pixels = rng.normal(size=(args.image_batch, 289, 289, 3)).astype(np.float32)
  encoders = model.encoders()
  text_fn, image_fn = jax.jit(encoders.text), jax.jit(encoders.image)
  params = jax.device_put(params)
  rows = []
  for name, fn, x, n in (("text", text_fn, ids, args.text_batch),
                         ("image", image_fn, pixels, args.image_batch)):
    x_jax = jax.device_put(x)
    start = time.perf_counter()
    jax.block_until_ready(fn(params, x_jax))
    compile_s = time.perf_counter() - start
    jax_s = common.time_calls(lambda: jax.block_until_ready(fn(params, x_jax)), args.repeats)
    if name == "text":
      x_torch = torch.from_numpy(ids).long().to(device)
      call = lambda: torch_model.get_text_features(input_ids=x_torch,
                                                   attention_mask=torch.ones_like(x_torch))
    else:
      x_torch = torch.from_numpy(pixels.transpose(0, 3, 1, 2)).to(device)
      call = lambda: torch_model.get_image_features(pixel_values=x_torch)
    def torch_forward():
      with torch.inference_mode():
        out = call()
      if device == "cuda":
        torch.cuda.synchronize()
      return getattr(out, "pooler_output", out)
    torch_s = common.time_calls(torch_forward, args.repeats)
    want = torch_forward().cpu().numpy()
    got = np.asarray(fn(params, x_jax))
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    rows.append((name, n, compile_s, jax_s, torch_s, float(np.abs(unit(got) - unit(want)).max())))
  step_config = align_base.get_config()
  step_config.batch_size = args.batch_size
  steps = range(args.steps)
  jax_rps, step_compile_s, _, _, _ = re_step.time_jax_step(d, step_config, data, steps,
                                                            sharding.make_mesh())
  torch_rps = re_step.time_torch_step(
      torch_model, [torch_model.text_model, torch_model.text_projection], d, step_config, data,
      steps, device)
  print(f"ALIGN (align-base shapes), JAX on {jax.devices()[0].platform}, torch on {device} "
        f"({torch.get_num_threads()} threads), fp32 at highest matmul precision, median of "
        f"{args.repeats}")
  common.row("", "batch", "compile s", "hierre_jax/s", "PyTorch/s", "speed-up", "max |diff|")
  for name, n, compile_s, jax_s, torch_s, err in rows:
    common.row(f"{name} tower (texts or images/s)", n, f"{compile_s:.1f}",
               common.fmt(n / jax_s), common.fmt(n / torch_s), common.speedup(torch_s, jax_s),
               f"{err:.1e}")
  common.row(f"RE train step (rows/s, {args.steps} batches)", args.batch_size,
             f"{step_compile_s:.1f}", common.fmt(jax_rps), common.fmt(torch_rps),
             common.speedup(jax_rps, torch_rps), "-")


if __name__ == "__main__":
  main()
