"""The RE train step prepared both ways, for any model family, timed side by side
(`timed_rounds`): hierre_jax's jitted step
(`radial.train_step.make_train_step`) and the straightforward PyTorch step a researcher would write
with the family's transformers model (texts padded to the longest of the batch, with
their attention mask, as the authors' release does). Same rows, loss (SPEC section 3)
and optimizer (AdamW)."""
import copy
import dataclasses
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
import torch

from benchmarks import common
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


@dataclasses.dataclass
class JaxSteps:
  """hierre_jax's step prepared on a list of batches: `run()` takes every one of them once
  (the state carried on) and blocks -> the last loss."""
  run: Callable
  compile_seconds: float  # the mean over the shapes, each compiled once before any timing
  shapes: int
  cache_seconds: float  # the pull-back cache's build (0 without the cache)


def jax_steps(model_dir, config, data, steps, mesh):
  """hierre_jax's step on `steps`, every shape compiled and one step warmed -> `JaxSteps`."""
  model = models.load(model_dir, config.scan_layers)
  batches = batches_of(model_dir, data, config)
  tx = loop.make_optimizer(config, len(steps), train_step.trained_groups(config, model.family))
  start = time.perf_counter()
  pullback = jax.block_until_ready({"pullback": train_step.pullback_targets(
      config, model, batches, mesh, steps), "images": None})
  cache_seconds = time.perf_counter() - start if config.pullback_cache else 0.0
  params = dict(model.params)
  if config.root != "empty_string":  # a fixed root (MERU's origin, ...) rides in the params
    params["root"] = train_step.initial_root(config, model, batches, mesh)
  state, state_sharding = loop.create_train_state(params, tx, mesh)
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
  held = {"state": compiled[shapes(inputs[0])](state, pullback, inputs[0])[0]}  # warm-up

  def run():
    for x in inputs:
      held["state"], metrics = compiled[shapes(x)](held["state"], pullback, x)
    return float(jax.block_until_ready(metrics["loss"]))
  return JaxSteps(run, float(np.mean(compile_seconds)), len(compiled), cache_seconds)


def torch_ext(x, y, r, margin=1e-6):
  u, w = x - r, y - x
  cos = (u * w).sum(-1) / (u.norm(dim=-1) * w.norm(dim=-1))
  return torch.arccos(cos.clamp(-1 + margin, 1 - margin))


def hf_text_features(m, ids, mask):
  """Unit text features of a transformers CLIPModel / AlignModel / SiglipModel."""
  out = m.get_text_features(input_ids=ids, attention_mask=mask)
  out = getattr(out, "pooler_output", out)
  return out / out.norm(dim=-1, keepdim=True)


SPHERE = dict(features=hf_text_features, ext=torch_ext,
              pullback=lambda e, o: (1 - (e * o).sum(-1).mean()) / 2)


def lorentz(c):
  """MERU's hyperboloid of curvature -c in torch (FAMILIES_SPEC 1.2, as
  `geometry.lorentz`): a twin's lifted text features, the exterior angle at x of (root, x,
  y) by the law of cosines, and the pull-back mean(-c <x, x_orig>_L - 1)."""
  time = lambda x: torch.sqrt(1 / c + (x * x).sum(-1))
  inner = lambda x, y: (x * y).sum(-1) - time(x) * time(y)
  distance = lambda x, y: torch.arccosh((-c * inner(x, y)).clamp(min=1 + 1e-6)) / c ** 0.5

  def features(m, ids, mask):
    del mask  # causal, pooled at the end-of-text id
    v = m.encode_text(ids)
    s = (c ** 0.5 * v.norm(dim=-1, keepdim=True)).clamp(min=1e-8)
    return torch.sinh(s.clamp(max=float(np.arcsinh(2.0 ** 15)))) / s * v

  def ext(x, y, root):
    root = root.expand_as(x)
    a, b = c ** 0.5 * distance(x, root), c ** 0.5 * distance(x, y)
    cosine = (torch.cosh(a) * torch.cosh(b) + c * inner(root, y)) / (
        torch.sinh(a) * torch.sinh(b)).clamp(min=1e-8)
    return np.pi - torch.arccos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
  return dict(features=features, ext=ext, pullback=lambda e, o: (-c * inner(e, o) - 1).mean())


def torch_step_fn(model, trained, lambdas, lr, wd, space=None, own_root=True):
  """The PyTorch RE step in `space` (SPHERE, over a transformers model's text features, or
  `lorentz(c)` over a MERU twin); `trained`: the text-tower modules AdamW updates; the root
  the features of the empty string (`own_root`) or the origin."""
  space = space or SPHERE
  frozen = copy.deepcopy(model).eval().requires_grad_(False)
  opt = torch.optim.AdamW([p for m in trained for p in m.parameters()], lr=lr, weight_decay=wd)
  lambda_p, lambda_e, lambda_m = lambdas
  features, ext = space["features"], space["ext"]

  def step(ids, mask, root_ids):  # ids, mask [B, 8, L] padded to the longest text
    b, n, length = ids.shape
    flat, flat_mask = ids.reshape(b * n, length), mask.reshape(b * n, length)
    emb = features(model, flat, flat_mask).reshape(b, n, -1)
    root = (features(model, root_ids, torch.ones_like(root_ids))[0] if own_root
            else torch.zeros_like(emb[0, 0]))
    with torch.no_grad():
      orig = features(frozen, flat, flat_mask).reshape(b, n, -1)
    p = ext(emb[:, :3], emb[:, 1:4], root).T
    q = ext(emb[:, :3], emb[:, 4:7], root).T
    pf, nf = p.flatten(), -q.flatten()
    s = pf + nf
    loss = (lambda_e * (p.mean() - q.mean()) + lambda_m * (s[pf.argmax()] + s[nf.argmax()])
            + lambda_p * space["pullback"](emb, orig))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())
  return step


def torch_steps(torch_model, trained, model_dir, config, data, steps, device, space=None):
  """The PyTorch step on `steps` (`torch_step_fn` in `space`), one step warmed -> run():
  every step once, blocking (each returns its float loss) -> the last loss."""
  batches = batches_of(model_dir, data, config)
  # Dropout off (eval mode; gradients still flow), as hierre_jax's step: CLIP has none,
  # ALIGN's BERT has 0.1 in transformers' train mode.
  step = torch_step_fn(torch_model.to(device).eval(), trained,
                       (config.lambda_p, config.lambda_e, config.lambda_m), config.lr,
                       config.weight_decay, space, config.root == "empty_string")
  inputs = []
  for s in steps:
    rows = batches.row_indices(s)
    longest = int(batches.lengths[rows].max())
    mask = np.arange(longest) < batches.lengths[rows][..., None]
    inputs.append([torch.from_numpy(x).long().to(device)
                   for x in (batches.ids[rows][:, :, :longest], mask)])
  root = torch.from_numpy(batches.root[None]).long().to(device)
  step(*inputs[0], root)  # warm-up
  return lambda: [step(ids, mask, root) for ids, mask in inputs][-1]


def timed_rounds(runs, repeats):
  """One untimed round of each prepared run (`JaxSteps.run`, `torch_steps`), then `repeats`
  rounds timed interleaved (`common.side_by_side`) -> ([len(runs), repeats] seconds, the
  last loss of each run's untimed round: every run has then taken the same steps from the
  same weights, so equal losses say both sides compute the same step)."""
  losses = [run() for run in runs]
  return common.side_by_side(runs, repeats, warmup=0), losses


def with_changes(config, changes):
  out = ml_collections.ConfigDict(config.to_dict())
  out.update(changes)
  return out
