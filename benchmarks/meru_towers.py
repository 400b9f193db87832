"""MERU: hierre_jax's jitted towers, traversal and RE train step against the PyTorch twin
(`benchmarks/meru_twin.py`, written from the spec), side by side in one run.

A random MERU of the release's shapes (`--size s|b|l` image tower at 224 px; the 12 x 512
text tower; features that carry signal), fp32 at the highest matmul precision; towers
median of `--repeats`; the traversal (FAMILIES_SPEC 1.4: 50 steps, cones, [ROOT]) of
`--images` images over `--candidates` texts, against the same walk vectorised in PyTorch,
chains compared; the RE step of configs/clip_b32.py with MERU's origin as the root
(hyperbolic exterior angles and pull-back) over `--steps` HierarCaps batches, against the
twin's step in PyTorch (`benchmarks/re_step.py`, `lorentz`), losses compared:

  python -m benchmarks.meru_towers [--size b] [--text_batch 64] [--image_batch 8]
      [--candidates 2000] [--images 64] [--repeats 3] [--batch_size 8] [--steps 5]
"""
import argparse
import os
import tempfile
import time

import jax
import numpy as np
import torch

from benchmarks import common
from benchmarks import meru_twin
from benchmarks import re_step
from configs import clip_b32
from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.evaluators import traversal
from hierre_jax.geometry import lorentz
from hierre_jax.models.meru import modeling
from hierre_jax.models.meru import random_init


def torch_traversal(texts, images, c, steps=traversal.STEPS, chunk=16):
  """MERU's walk over [N, P] text and [M, P] image points (float32 torch) -> chains."""
  time_of = lambda x: torch.sqrt(1 / c + (x * x).sum(-1))
  norm = lambda x: x.norm(dim=-1).clamp_min(lorentz.EPS)
  text_t, text_norm = time_of(texts), norm(texts)
  aperture = torch.asin(torch.clamp(2 * lorentz.MIN_RADIUS / (c ** 0.5 * text_norm + 1e-8),
                                    -1 + 1e-7, 1 - 1e-7))
  chains = []
  for s in range(0, len(images), chunk):
    x = images[s:s + chunk]
    d0 = torch.acosh(torch.sqrt(1 + c * (x * x).sum(-1)).clamp_min(1 + 1e-8))
    tangent = (d0 / (c ** 0.5 * norm(x)).clamp_min(1e-8))[:, None] * x
    v = torch.linspace(1, 0, steps)[None, :, None] * tangent[:, None]  # [m, S, P]
    r = (c ** 0.5 * v.norm(dim=-1)).clamp(1e-8, float(np.arcsinh(2.0 ** 15)))
    points = (torch.sinh(r) / r)[..., None] * v
    point_t = time_of(points)  # [m, S]
    inner = points @ texts.T - point_t[..., None] * text_t  # [m, S, N]
    c_xy = c * inner
    cosine = (point_t[..., None] + c_xy * text_t) / (
        text_norm * torch.sqrt((c_xy ** 2 - 1).clamp_min(1e-8)) + 1e-8)
    angle = torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
    scores = torch.where(angle <= aperture, inner, torch.tensor(traversal.OUTSIDE_CONE))
    root = -point_t / c ** 0.5
    winners = torch.cat([scores, root[..., None]], dim=-1).argmax(-1)
    for row in winners.tolist():
      chains.append([w for w in dict.fromkeys(row) if w < len(texts)][::-1])
  return chains


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--size", default="b", choices=sorted(modeling.VISION_SIZES))
  parser.add_argument("--text_batch", type=int, default=64)
  parser.add_argument("--image_batch", type=int, default=8)
  parser.add_argument("--candidates", type=int, default=2000)
  parser.add_argument("--images", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=8, help="RE step: rows per batch")
  parser.add_argument("--steps", type=int, default=5, help="RE step: batches a round")
  parser.add_argument("--train_csv", default=os.path.join(common.SHARED,
                                                          "hierarcaps_coco_train.csv.gz"))
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  width, depth, _ = modeling.VISION_SIZES[args.size]
  d = random_init.write_random_meru(tempfile.mkdtemp(), {},
                                    dict(hidden_size=width, num_hidden_layers=depth), 512)
  model = models.load(d)
  state = torch.load(os.path.join(d, random_init.FILE), weights_only=True)["model"]
  twin = meru_twin.twin_of(state, model.config).float()
  rng = np.random.default_rng(0)
  ids = np.zeros((args.text_batch, 77), np.int32)
  lengths = rng.integers(5, 30, args.text_batch)
  for i, n in enumerate(lengths):
    ids[i, :n] = np.concatenate([[49406], rng.integers(1, 49000, n - 2), [49407]])
  pixels = rng.uniform(size=(args.image_batch, 224, 224, 3)).astype(np.float32)
  encoders = model.encoders()
  params = jax.device_put(model.params)
  print(f"MERU ViT-{args.size.upper()} (random weights), {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs")
  common.row("", "batch", "compile s", "hierre_jax /s", "PyTorch /s", "speed-up", "max diff")
  for name, fn, x, torch_fn, torch_x, n in (
      ("text tower (77 tokens), texts", encoders.text, ids, twin.encode_text,
       torch.from_numpy(ids).long(), args.text_batch),
      ("image tower (224 x 224), images", encoders.image, pixels, twin.encode_image,
       torch.from_numpy(pixels.transpose(0, 3, 1, 2)), args.image_batch)):
    jitted = jax.jit(fn)
    start = time.perf_counter()
    got = np.asarray(jax.block_until_ready(jitted(params, x)))
    compile_s = time.perf_counter() - start
    with torch.inference_mode():
      want = torch_fn(torch_x).numpy()
      jax_s, torch_s = common.side_by_side(
          [lambda: jax.block_until_ready(jitted(params, x)), lambda: torch_fn(torch_x)],
          args.repeats)
    common.row(name, n, f"{compile_s:.1f}", common.per_second(n, jax_s),
               common.per_second(n, torch_s), common.ratio(torch_s, jax_s),
               f"{np.abs(got - want).max():.1e}")
  # The traversal over lifted random features of the real size.
  geometry = model.geometry
  texts = np.asarray(geometry.lift(rng.normal(size=(args.candidates, 512)).astype(np.float32)
                                   * rng.uniform(0.05, 0.6, (args.candidates, 1))))
  images = np.asarray(geometry.lift(rng.normal(size=(args.images, 512)).astype(np.float32)))
  traverse = lambda: traversal.traverse(geometry, texts, images)
  start = time.perf_counter()
  got = traverse()
  compile_s = time.perf_counter() - start
  with torch.inference_mode():
    tt, ti = torch.from_numpy(texts.copy()), torch.from_numpy(images.copy())
    want = torch_traversal(tt, ti, geometry.c)
    jax_s, torch_s = common.side_by_side(
        [traverse, lambda: torch_traversal(tt, ti, geometry.c)], args.repeats)
  same = sum(a == b for a, b in zip(got, want))
  common.row(f"traversal ({args.candidates} texts), images", args.images, f"{compile_s:.1f}",
             common.per_second(args.images, jax_s), common.per_second(args.images, torch_s),
             common.ratio(torch_s, jax_s), f"{same}/{len(got)} same")
  step_config = clip_b32.get_config()
  step_config.update(batch_size=args.batch_size, root="origin")
  data = common.step_rows(args.train_csv, args.batch_size, args.steps)
  steps = range(args.steps)
  jax_run = re_step.jax_steps(d, step_config, data, steps, sharding.make_mesh())
  torch_run = re_step.torch_steps(twin, [twin.textual, twin.textual_proj], d, step_config, data,
                                  steps, "cpu", re_step.lorentz(float(geometry.c)))
  (jax_s, torch_s), losses = re_step.timed_rounds([jax_run.run, torch_run], args.repeats)
  rows = args.batch_size * args.steps
  common.row(f"RE train step ({args.steps} batches), rows", args.batch_size,
             f"{jax_run.compile_seconds:.1f}", common.per_second(rows, jax_s),
             common.per_second(rows, torch_s), common.ratio(torch_s, jax_s),
             f"loss {abs(losses[0] - losses[1]):.1e}")


if __name__ == "__main__":
  main()
