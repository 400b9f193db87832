"""RE train-step throughput (rows/s): hierre_jax's jitted step vs a straightforward PyTorch step.

Same model (random ViT-B/32 CLIP, text tower trained), same rows (HierarCaps training
rows, batch 8 = 64 texts), same loss (SPEC section 3, lambda_p=10, lambda_e=1,
lambda_m=1), same optimizer (AdamW, lr 1e-7, wd 0.01). PyTorch pads each batch to
its longest text, as the authors' release does; hierre_jax is timed with three
paddings: tiers 1-2 and 3-4 each to their own length (multiple of 8; the CPU choice),
one block (multiple of 8), and a static 77 (one compilation; the GPU/TPU choice).

  python -m benchmarks.train_step_throughput [--steps 10]
"""
import argparse
import copy
import os
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
import torch

from benchmarks import common
from configs import clip_b32
from hierre_jax import checkpoints, embedding, input_pipeline, sharding, train
from hierre_jax import tokenizer as tokenizer_lib


def torch_ext(x, y, r, margin=1e-6):
  u, w = x - r, y - x
  cos = (u * w).sum(-1) / (u.norm(dim=-1) * w.norm(dim=-1))
  return torch.arccos(cos.clamp(-1 + margin, 1 - margin))


def torch_step_fn(model, lambdas, lr, wd):
  """The straightforward PyTorch RE step, as a researcher would write it with HF CLIPModel."""
  frozen = copy.deepcopy(model).eval().requires_grad_(False)
  params = list(model.text_model.parameters()) + list(model.text_projection.parameters())
  opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
  lambda_p, lambda_e, lambda_m = lambdas

  def features(m, ids):
    out = m.get_text_features(input_ids=ids)
    out = getattr(out, "pooler_output", out)
    return out / out.norm(dim=-1, keepdim=True)

  def step(ids, root_ids):  # ids [B, 8, L] padded to the longest text of the batch
    b, n, length = ids.shape
    flat = ids.reshape(b * n, length)
    emb = features(model, flat).reshape(b, n, -1)
    root = features(model, root_ids)[0]
    with torch.no_grad():
      orig = features(frozen, flat).reshape(b, n, -1)
    p = torch_ext(emb[:, :3], emb[:, 1:4], root).T
    q = torch_ext(emb[:, :3], emb[:, 4:7], root).T
    pf, nf = p.flatten(), -q.flatten()
    s = pf + nf
    loss = (lambda_e * (p.mean() - q.mean()) + lambda_m * (s[pf.argmax()] + s[nf.argmax()])
            + lambda_p * (1 - (emb * orig).sum(-1).mean()) / 2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)
  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--variants", default="grouped,block,static",
                      help="which hierre_jax paddings to time (each compiles its shapes)")
  parser.add_argument("--train_csv", default=os.path.join(common.SHARED,
                                                          "hierarcaps_coco_train.csv.gz"))
  args = parser.parse_args()
  config = clip_b32.get_config()
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  if not os.path.exists(args.train_csv):
    args.train_csv = os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                  "hierarcaps_sample.csv")

  d = tempfile.mkdtemp()
  torch_model = common.vit_b32_torch_checkpoint(d)
  model_config, params, _ = checkpoints.load_clip(d)
  tok = tokenizer_lib.load_tokenizer(d)
  data = input_pipeline.read_hierarchies(args.train_csv)
  root_ids = embedding.root_ids(tok)
  print(f"  model and {len(data)} rows loaded", file=sys.stderr, flush=True)
  steps = range(args.steps)
  mesh = sharding.make_mesh()

  def jax_rows_per_second(length_groups, length_multiple):
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.length_groups, cfg.length_multiple = length_groups, length_multiple
    batches = input_pipeline.TrainBatches(data, tok, cfg.batch_size, cfg.seed,
                                          cfg.length_multiple, length_groups)
    tx = train.make_optimizer(cfg, len(steps))
    state, state_sharding = train.create_train_state(jax.tree.map(np.array, params), tx, mesh)
    frozen = jax.device_put(jax.tree.map(np.array, embedding.text_params(params)))
    step = train.make_train_step(model_config, cfg, tx, root_ids, mesh, state_sharding)
    inputs = [sharding.put_global_batch(batches.batch(s), mesh) for s in steps]
    start = time.perf_counter()
    for x in inputs:  # compile every shape once
      state, metrics = step(state, frozen, x)
    jax.block_until_ready(state)
    shapes = {tuple(g.shape for g in x) for x in inputs}
    print(f"  groups {length_groups}: compiled {len(shapes)} shapes in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    for x in inputs:
      state, metrics = step(state, frozen, x)
    jax.block_until_ready(state)
    return cfg.batch_size * len(inputs) / (time.perf_counter() - start), float(metrics["loss"])

  variants = {
      "grouped": ("hierre_jax, tiers 1-2 | 3-4, multiple of 8", ((0, 1), (2, 3)), 8),
      "block": ("hierre_jax, one block, multiple of 8", ((0, 1, 2, 3),), 8),
      "static": ("hierre_jax, one block, 77 (one compilation)", ((0, 1, 2, 3),), 77),
  }
  jax_results = [(variants[v][0], jax_rows_per_second(*variants[v][1:])[0])
                 for v in args.variants.split(",")]

  device = "cuda" if torch.cuda.is_available() else "cpu"
  batches = input_pipeline.TrainBatches(data, tok, config.batch_size, config.seed)
  torch_step = torch_step_fn(torch_model.to(device).train(), (config.lambda_p, config.lambda_e,
                                                   config.lambda_m), config.lr,
                             config.weight_decay)
  torch_inputs = []
  for s in steps:
    rows = batches.row_indices(s)
    longest = int(batches.lengths[rows].max())
    torch_inputs.append(torch.from_numpy(batches.ids[rows][:, :, :longest]).long().to(device))
  torch_root = torch.from_numpy(root_ids).long().to(device)
  torch_step(torch_inputs[0], torch_root)  # warm-up
  start = time.perf_counter()
  for x in torch_inputs:
    torch_step(x, torch_root)  # returns float(loss): waits for the device
  torch_rps = config.batch_size * len(torch_inputs) / (time.perf_counter() - start)

  print(f"RE train step, ViT-B/32 text tower, batch {config.batch_size} rows (64 texts + root, "
        f"pull-back forward included), {len(steps)} HierarCaps batches, JAX on "
        f"{jax.devices()[0].platform} x{jax.device_count()}, torch on {device} "
        f"({torch.get_num_threads()} CPU threads)")
  common.row("", "rows/s", "vs PyTorch")
  for name, rows_per_second in jax_results:
    common.row(name, common.fmt(rows_per_second), common.speedup(rows_per_second, torch_rps))
  common.row("PyTorch, HF CLIPModel, padded to longest", common.fmt(torch_rps), "1.00x")


if __name__ == "__main__":
  main()
