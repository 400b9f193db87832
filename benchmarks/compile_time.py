"""Compile seconds of the evaluation encoders, per shape and in all, for each embedding
path: the text tower padded per length bucket (every multiple of 8 up to 77 a shape, as
`--nopack_texts` compiles them over a suite), padded to a static 77, or packed (one shape),
and the image tower; random ViT-B/32, one fresh `jax.jit` each (no persistent
compilation cache), ahead-of-time `lower(...).compile()`. Then ALIGN's BERT-base text
tower (packed) and the RE train step of configs/align_base.py, with BERT's layers scanned
(the default) and unrolled (as before they could be scanned).

  python -m benchmarks.compile_time [--text_batch 256] [--image_batch 64] [--noalign]
"""
import argparse
import tempfile
import time

import jax
import numpy as np

from benchmarks import align_throughput
from benchmarks import common
from benchmarks import re_step
from configs import align_base
from configs import demo
from hierre_jax import embedding
from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.data import hierarcaps_csv
from hierre_jax.data import packing
from hierre_jax.models.align import random_init as align_random_init
from hierre_jax.models.clip import random_init


def compile_seconds(fn, *args):
  start = time.perf_counter()
  jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--text_batch", type=int, default=256)
  parser.add_argument("--image_batch", type=int, default=64)
  parser.add_argument("--noalign", dest="align", action="store_false")
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  d = random_init.write_random_clip(tempfile.mkdtemp(), random_init.VIT_B32["text_config"],
                                    random_init.VIT_B32["vision_config"], 512)
  model = models.load(d)
  params, text = model.params, model.text_params()
  ids = lambda length: np.zeros((args.text_batch, length), np.int32)
  bucketed = [compile_seconds(embedding.text_encoder(model), text, ids(n))
              for n in range(8, 78, 8)] + [compile_seconds(embedding.text_encoder(model),
                                                            text, ids(77))]
  # A packed call: text_batch texts of ~12 tokens in rows of 77 (what HierarCaps gives).
  # (distinct texts: packing embeds a repeated text once)
  texts = [(np.full(12, 320 + i, np.int32), 11) for i in range(args.text_batch)]
  packed = packing.pack([texts], model.max_length, 0)
  packed_s = compile_seconds(embedding.packed_text_encoder(model), text, packed)
  image_s = compile_seconds(embedding.image_encoder(model), params,
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
  if args.align:
    align_rows(args.text_batch)


def align_rows(text_batch, steps=3):
  """Compile seconds of ALIGN's packed BERT-base text tower and of the RE train step (batch
  8, `steps` HierarCaps sample rows' batches), BERT's layers scanned and unrolled."""
  data = hierarcaps_csv.read_hierarchies(demo.BUNDLED_SAMPLE)
  d = align_random_init.write_random_align(tempfile.mkdtemp(), align_throughput.BASE_TEXT,
                                           align_random_init.TINY_VISION, 640)
  texts = [(np.full(12, 1000 + i, np.int32), 0)  # distinct, pooled at [CLS]
           for i in range(text_batch)]
  print(f"ALIGN: BERT-base text tower, {jax.devices()[0].platform}, text batch {text_batch}; "
        f"RE train step of configs/align_base.py, batch 8")
  common.row("", "text tower s", "step compile s", "step rows/s")
  for scan in (True, False):
    model = models.load(d, scan)
    packed = packing.pack([texts], model.max_length, 0)
    text_s = compile_seconds(embedding.packed_text_encoder(model), model.text_params(), packed)
    step_config = align_base.get_config()
    step_config.scan_layers = scan
    prepared = re_step.jax_steps(d, step_config, data, range(steps), sharding.make_mesh())
    rows_per_s = 8 * steps / common.time_calls(prepared.run, 1, warmup=0)
    common.row(f"BERT layers {'scanned' if scan else 'unrolled'}", f"{text_s:.1f}",
               f"{prepared.compile_seconds:.1f}", f"{rows_per_s:.2f}")


if __name__ == "__main__":
  main()
