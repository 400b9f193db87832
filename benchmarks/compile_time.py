"""Compile seconds of the evaluation encoders, per shape and in all, for each embedding
path: the text tower padded per length bucket (every multiple of 8 up to 77 a shape, as
`--nopack_texts` compiles them over a suite), padded to a static 77, or packed (one shape),
and the image tower; random ViT-B/32, one fresh `jax.jit` each (no persistent
compilation cache), ahead-of-time `lower(...).compile()`.

  python -m benchmarks.compile_time [--text_batch 256] [--image_batch 64]
"""
import argparse
import tempfile
import time

import jax
import numpy as np

from benchmarks import common
from hierre_jax import embedding
from hierre_jax import models
from hierre_jax.data import packing
from hierre_jax.models.clip import random_init


def compile_seconds(fn, *args):
  start = time.perf_counter()
  jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--text_batch", type=int, default=256)
  parser.add_argument("--image_batch", type=int, default=64)
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  d = random_init.write_random_clip(tempfile.mkdtemp(), random_init.VIT_B32["text_config"],
                                    random_init.VIT_B32["vision_config"], 512)
  family, config, params, _ = models.load(d)
  text = embedding.text_params(config, params)
  ids = lambda length: np.zeros((args.text_batch, length), np.int32)
  bucketed = [compile_seconds(embedding.text_encoder(config), text, ids(n))
              for n in range(8, 78, 8)] + [compile_seconds(embedding.text_encoder(config),
                                                            text, ids(77))]
  # A packed call: text_batch texts of ~12 tokens in rows of 77 (what HierarCaps gives).
  texts = [(np.full(12, 320, np.int32), 11)] * args.text_batch
  packed = packing.pack([texts], family.max_length, 0)
  packed_s = compile_seconds(embedding.packed_text_encoder(config), text, packed)
  image_s = compile_seconds(embedding.image_encoder(config), params,
                            np.zeros((args.image_batch, 224, 224, 3), np.float32))
  print(f"Compile seconds, random ViT-B/32, {jax.devices()[0].platform}, text batch "
        f"{args.text_batch}, image batch {args.image_batch}")
  common.row("", "shapes", "s per shape", "s in all")
  common.row("texts padded per bucket (8, 16, ..., 77)", len(bucketed),
             f"{np.mean(bucketed):.1f}", f"{sum(bucketed):.1f}")
  common.row("texts padded to 77", 1, f"{bucketed[-1]:.1f}", f"{bucketed[-1]:.1f}")
  common.row(f"texts packed ({packed.ids.shape[1]} rows of 77)", 1, f"{packed_s:.1f}",
             f"{packed_s:.1f}")
  common.row("images (224 x 224)", 1, f"{image_s:.1f}", f"{image_s:.1f}")


if __name__ == "__main__":
  main()
