"""RE train-step throughput (rows/s): hierre_jax's jitted step vs a straightforward PyTorch
step, today's step vs the new one, compile seconds per shape and model FLOP/s vs the peak;
every variant and PyTorch timed in interleaved rounds (each round all the steps of each
side), medians with (min-max) and the round-by-round speed-up.

Same model (random ViT-B/32 CLIP, text tower trained), same rows (HierarCaps training
rows, batch 8 = 64 texts), same loss (SPEC section 3, lambda_p=10, lambda_e=1,
lambda_m=1), same optimizer (AdamW, lr 1e-7, wd 0.01). PyTorch pads each batch to its
longest text, as the authors' release does. hierre_jax variants: unrolled or scanned
encoder layers; pull-back targets from a frozen forward pass in every step or from the
cache of frozen features (built once, its seconds reported apart); texts packed several
to a row of 77 tokens (the row count exact or rounded up to a multiple of 4), or padded:
tiers 1-2 and 3-4 each to their own length (multiple of 8), one block (multiple of 8),
or a static 77 (one compilation).

Model FLOPs per row: forward and backward of the 8 texts through the trained text tower
at their real token counts, 3 x forward, with forward(T) = layers x (8 T D^2 + 4 T D F +
4 T^2 D) + 2 D P (dense layers, attention scores and values, the projection); padding,
the root's pass and the frozen pass are not model FLOPs. The peak they are compared with
is measured (the fp32 FLOP/s of a large square matmul in XLA on this machine: the
practical ceiling for dense work), or the datasheet figure given as --peak_gflops.

  python -m benchmarks.train_step_throughput [--steps 10] [--repeats 3] [--variants ...]
"""
import argparse
import os
import sys
import tempfile

import jax
import numpy as np
import torch

from benchmarks import common
from benchmarks import re_step
from configs import clip_b32
from hierre_jax.common import sharding
from hierre_jax.data import hierarcaps_csv
from hierre_jax.models.clip import random_init

GROUPED, BLOCK = ((0, 1), (2, 3)), ((0, 1, 2, 3),)


def padded(length_groups, length_multiple, scan_layers=True, pullback_cache=True):
  return dict(pack_texts=False, length_groups=length_groups, length_multiple=length_multiple,
              scan_layers=scan_layers, pullback_cache=pullback_cache)


def packed(rows_multiple, scan_layers=True, pullback_cache=True):
  return dict(pack_texts=True, pack_rows_multiple=rows_multiple, scan_layers=scan_layers,
              pullback_cache=pullback_cache)


# name: (label, config changes)
VARIANTS = {
    "unrolled": ("unrolled, frozen pass, tiers 1-2 | 3-4 x8", padded(GROUPED, 8, False, False)),
    "scan": ("scanned, frozen pass, tiers 1-2 | 3-4 x8", padded(GROUPED, 8, True, False)),
    "grouped": ("scanned, cache, tiers 1-2 | 3-4 x8", padded(GROUPED, 8)),
    "grouped4": ("scanned, cache, tiers 1-2 | 3-4 x4", padded(GROUPED, 4)),
    "exact": ("scanned, cache, tiers 1-2 | 3-4 x1", padded(GROUPED, 1)),
    "block": ("scanned, cache, one block x8", padded(BLOCK, 8)),
    "unrolled77": ("unrolled, frozen pass, static 77", padded(BLOCK, 77, False, False)),
    "static77": ("scanned, cache, static 77", padded(BLOCK, 77)),
    "packed": ("scanned, cache, packed, rows x1", packed(1)),
    "packed4": ("scanned, cache, packed, rows x4", packed(4)),
    "packed_unrolled": ("unrolled, cache, packed, rows x1", packed(1, scan_layers=False)),
    "packed_frozen": ("scanned, frozen pass, packed, rows x1", packed(1, pullback_cache=False)),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of all steps")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--variants", default="grouped,static77,packed,packed4,packed_unrolled",
                      help=f"which hierre_jax steps to time, of {','.join(VARIANTS)}")
  parser.add_argument("--peak_gflops", type=float, default=0.0,
                      help="fp32 peak of the machine, e.g. a datasheet figure (default: "
                      "measured with a large matmul)")
  parser.add_argument("--train_csv", default=os.path.join(common.SHARED,
                                                          "hierarcaps_coco_train.csv.gz"))
  args = parser.parse_args()
  config = clip_b32.get_config()
  config.batch_size = args.batch_size
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  if not os.path.exists(args.train_csv):
    args.train_csv = os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                  "hierarcaps_sample.csv")

  d = tempfile.mkdtemp()
  torch_model = common.vit_b32_torch_checkpoint(d)
  data = hierarcaps_csv.read_hierarchies(args.train_csv)
  rows = args.batch_size * args.steps  # one epoch of these rows: every step a new batch
  data = hierarcaps_csv.Hierarchies(data.positives[:rows], data.negatives[:rows],
                                    data.images[:rows])
  mesh = sharding.make_mesh()
  peak, peak_source = args.peak_gflops, "given"
  if not peak:
    peak, peak_source = common.matmul_gflops(), "measured: 4096^2 fp32 matmul"
  steps = range(args.steps)
  lengths = re_step.batches_of(d, data, config).lengths
  v = random_init.VIT_B32
  step_flops = common.step_flops(lengths, v["text_config"], v["projection_dim"])
  print(f"  {rows} rows; {step_flops / 1e9:.2f} model GFLOPs per row", file=sys.stderr,
        flush=True)

  prepared = []
  for name in args.variants.split(","):
    label, changes = VARIANTS[name]
    prepared.append((label, re_step.jax_steps(d, re_step.with_changes(config, changes), data,
                                              steps, mesh)))
    print(f"  {label}: prepared", file=sys.stderr, flush=True)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_run = re_step.torch_steps(
      torch_model, [torch_model.text_model, torch_model.text_projection], d, config, data,
      steps, device)
  seconds, losses = re_step.timed_rounds([p.run for _, p in prepared] + [torch_run],
                                         args.repeats)
  torch_s = seconds[-1]

  print(f"RE train step, ViT-B/32 text tower, batch {config.batch_size} rows (64 texts + root), "
        f"{len(steps)} HierarCaps batches, JAX on {jax.devices()[0].platform} "
        f"x{jax.device_count()}, torch on {device} ({torch.get_num_threads()} CPU threads); "
        f"{step_flops / 1e9:.2f} model GFLOPs per row, peak {peak:.1f} GFLOP/s ({peak_source})")
  common.row("", "rows/s", "vs PyTorch", "compile s/shape", "shapes", "cache s",
             "GFLOP/s", "of peak")
  flops = lambda s: rows / np.median(s) * step_flops / 1e9
  for (label, p), jax_s in zip(prepared, seconds):
    common.row(label, common.per_second(rows, jax_s), common.ratio(torch_s, jax_s),
               f"{p.compile_seconds:.1f}", str(p.shapes),
               f"{p.cache_seconds:.1f}" if p.cache_seconds else "-", f"{flops(jax_s):.1f}",
               f"{flops(jax_s) / peak:.1%}")
  common.row("PyTorch, HF CLIPModel, padded to longest", common.per_second(rows, torch_s),
             "1.00x", "-", "-", "-", f"{flops(torch_s):.1f}", f"{flops(torch_s) / peak:.1%}")
  print("last loss of the first round: " + ", ".join(
      f"{label} {loss:.6f}" for label, loss in zip([l for l, _ in prepared] + ["PyTorch"],
                                                   losses)))


if __name__ == "__main__":
  main()
