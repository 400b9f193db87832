"""The RE train step timed both ways, for any model family: hierre_jax's jitted step
(`radial.train_step.make_train_step`) and the straightforward PyTorch step a researcher would write
with the family's transformers model (texts padded to the longest of the batch, with
their attention mask, as the authors' release does). Same rows, loss (SPEC section 3)
and optimizer (AdamW)."""
import copy
import time

import jax
import ml_collections
import numpy as np
import torch

from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.radial import train_batches
from hierre_jax.radial import train_step
from hierre_jax.trainer import loop


def batches_of(model_dir, data, config):
  """`TrainBatches` of `data` for the checkpoint's family and config's batching."""
  model = models.load(model_dir)
  return train_batches.TrainBatches(
      data, model.tokenizer, config.batch_size, config.seed, model.pool_index, model.max_length,
      config.length_multiple, config.length_groups)


def time_jax_step(model_dir, config, data, steps, mesh):
  """hierre_jax's step on `steps` (every shape compiled first, timed apart) -> (rows/s,
  compile s per shape, number of shapes, pull-back cache build s, last loss)."""
  model = models.load(model_dir, config.scan_layers)
  batches = batches_of(model_dir, data, config)
  tx = loop.make_optimizer(config, len(steps), train_step.trained_groups(config, model.family))
  start = time.perf_counter()
  pullback = jax.block_until_ready({"pullback": train_step.pullback_targets(
      config, model, batches, mesh, steps), "images": None})
  cache_seconds = time.perf_counter() - start if config.pullback_cache else 0.0
  state, state_sharding = loop.create_train_state(model.params, tx, mesh)
  step = train_step.make_train_step(model, config, tx, mesh, state_sharding)
  inputs = [sharding.put_global_batch(
      train_step.host_batch(config, batches, s, mesh.devices.size), mesh) for s in steps]
  shapes = lambda x: tuple(a.shape for a in jax.tree.leaves(x))
  compiled, compile_seconds = {}, []
  for x in inputs:  # compile every shape once, timed
    if shapes(x) not in compiled:
      start = time.perf_counter()
      compiled[shapes(x)] = step.lower(state, pullback, x).compile()
      compile_seconds.append(time.perf_counter() - start)
  run = lambda state, x: compiled[shapes(x)](state, pullback, x)
  state, _ = run(state, inputs[0])  # warm-up
  start = time.perf_counter()
  for x in inputs:
    state, metrics = run(state, x)
  jax.block_until_ready(state)
  rows_per_second = config.batch_size * len(inputs) / (time.perf_counter() - start)
  return (rows_per_second, float(np.mean(compile_seconds)), len(compiled), cache_seconds,
          float(metrics["loss"]))


def torch_ext(x, y, r, margin=1e-6):
  u, w = x - r, y - x
  cos = (u * w).sum(-1) / (u.norm(dim=-1) * w.norm(dim=-1))
  return torch.arccos(cos.clamp(-1 + margin, 1 - margin))


def torch_step_fn(model, trained, lambdas, lr, wd):
  """The PyTorch RE step over `model.get_text_features(input_ids, attention_mask)`
  (CLIPModel, AlignModel); `trained`: the text-tower modules AdamW updates."""
  frozen = copy.deepcopy(model).eval().requires_grad_(False)
  opt = torch.optim.AdamW([p for m in trained for p in m.parameters()], lr=lr, weight_decay=wd)
  lambda_p, lambda_e, lambda_m = lambdas

  def features(m, ids, mask):
    out = m.get_text_features(input_ids=ids, attention_mask=mask)
    out = getattr(out, "pooler_output", out)
    return out / out.norm(dim=-1, keepdim=True)

  def step(ids, mask, root_ids):  # ids, mask [B, 8, L] padded to the longest text
    b, n, length = ids.shape
    flat, flat_mask = ids.reshape(b * n, length), mask.reshape(b * n, length)
    emb = features(model, flat, flat_mask).reshape(b, n, -1)
    root = features(model, root_ids, torch.ones_like(root_ids))[0]
    with torch.no_grad():
      orig = features(frozen, flat, flat_mask).reshape(b, n, -1)
    p = torch_ext(emb[:, :3], emb[:, 1:4], root).T
    q = torch_ext(emb[:, :3], emb[:, 4:7], root).T
    pf, nf = p.flatten(), -q.flatten()
    s = pf + nf
    loss = (lambda_e * (p.mean() - q.mean()) + lambda_m * (s[pf.argmax()] + s[nf.argmax()])
            + lambda_p * (1 - (emb * orig).sum(-1).mean()) / 2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())
  return step


def time_torch_step(torch_model, trained, model_dir, config, data, steps, device):
  """The PyTorch step on `steps` (after one warm-up step) -> rows/s."""
  batches = batches_of(model_dir, data, config)
  # Dropout off (eval mode; gradients still flow), as hierre_jax's step: CLIP has none,
  # ALIGN's BERT has 0.1 in transformers' train mode.
  step = torch_step_fn(torch_model.to(device).eval(), trained,
                       (config.lambda_p, config.lambda_e, config.lambda_m), config.lr,
                       config.weight_decay)
  inputs = []
  for s in steps:
    rows = batches.row_indices(s)
    longest = int(batches.lengths[rows].max())
    mask = np.arange(longest) < batches.lengths[rows][..., None]
    inputs.append([torch.from_numpy(x).long().to(device)
                   for x in (batches.ids[rows][:, :, :longest], mask)])
  root = torch.from_numpy(batches.root[None]).long().to(device)
  step(*inputs[0], root)  # warm-up
  start = time.perf_counter()
  for ids, mask in inputs:
    step(ids, mask, root)  # returns float(loss): waits for the device
  return config.batch_size * len(inputs) / (time.perf_counter() - start)


def with_changes(config, changes):
  out = ml_collections.ConfigDict(config.to_dict())
  out.update(changes)
  return out
