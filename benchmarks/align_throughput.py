"""ALIGN tower throughput: jitted Flax towers vs transformers' AlignModel in PyTorch.

align-base shapes (BERT-base text tower, EfficientNet-B7 image tower; the offline
WordPiece vocabulary is small, so the word-embedding table is too, which changes no
throughput), random weights re-drawn so that features carry signal; texts of 64 tokens,
images of 289 x 289; same machine, one run:

  python -m benchmarks.align_throughput [--text_batch 64] [--image_batch 8] [--repeats 3]
"""
import argparse
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from benchmarks import common
from hierre_jax import models
from hierre_jax.models.align import random_init

BASE_TEXT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
BASE_VISION = dict(image_size=289, hidden_dim=640, depthwise_padding=[])


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--text_batch", type=int, default=64)
  parser.add_argument("--image_batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  device = "cuda" if torch.cuda.is_available() else "cpu"
  with tempfile.TemporaryDirectory() as d:
    random_init.write_random_align(d, BASE_TEXT, BASE_VISION, 640)
    family, config, params, _ = models.load(d)
    torch_model = transformers.AlignModel.from_pretrained(d).eval().to(device)
  rng = np.random.default_rng(0)
  ids = rng.integers(104, config.text.vocab_size, (args.text_batch, 64)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  pixels = rng.normal(size=(args.image_batch, 289, 289, 3)).astype(np.float32)
  encoders = family.encoders(config)
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
  print(f"ALIGN (align-base shapes), JAX on {jax.devices()[0].platform}, torch on {device} "
        f"({torch.get_num_threads()} threads), fp32 at highest matmul precision, median of "
        f"{args.repeats}")
  common.row("", "batch", "compile s", "hierre_jax/s", "PyTorch/s", "speed-up", "max |diff|")
  for name, n, compile_s, jax_s, torch_s, err in rows:
    common.row(f"{name} tower", n, f"{compile_s:.1f}", common.fmt(n / jax_s),
               common.fmt(n / torch_s), common.speedup(torch_s, jax_s), f"{err:.1e}")


if __name__ == "__main__":
  main()
