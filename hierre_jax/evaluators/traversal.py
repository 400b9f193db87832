"""MERU's image traversal (../shared/FAMILIES_SPEC.md 1.4), the hyperbolic inference the RE
paper evaluates MERU with on HierarCaps: from the image to the root in 50 steps along the
geodesic (to the origin, MERU's walk: even steps in tangent space, each point lifted back;
to the embedding of "" under RE's root, `--hyperbolic_root=empty_string`); at each point
the candidate texts whose entailment cone holds it compete by the Lorentzian inner product,
and a [ROOT] candidate (the root) always may; the distinct winners, in order, are the
chain.

The choices the RE paper leaves open are arguments, recorded with the results
(`CHOICES`, with `WALK_TO` the root walked to): the candidate pool (the test file's
distinct positive texts, as for RE's levels), whether [ROOT] competes, and whether the
first (most generic) text is dropped.

MERU's CLIP baselines walk the same way on the sphere (`traverse_sphere`): from the image
to a stored root vector, each point L2-normalised, every text scored by the dot product
(no cones), [ROOT] the root vector itself.
"""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hierre_jax.common import errors
from hierre_jax.geometry import lorentz
from hierre_jax.models import state_dicts

STEPS = 50
OUTSIDE_CONE = -1e12  # the score of a text whose cone does not hold the point
CHOICES = {"steps": STEPS, "candidates": "distinct positive texts of the test file",
           "root_candidate": True, "drop_first": False,
           # MERU's script starts at the image's point; the RE paper says "the closest text
           # embedding to the given image", which is not what is done here
           "start": "the image's embedding"}
WALK_TO = {"origin": "the origin", "empty_string": "the embedding of the empty string",
           "model": "the model's stored root"}  # by `embedding.Embedder.root_source`


@functools.partial(jax.jit, static_argnums=(4, 5))
def _winners(images, texts, root, c, steps, root_candidate):
  """[m, P] image points, [N, P] text points, [P] root point -> [m, steps] winner per step,
  image to root (N for [ROOT], N + 1 where no candidate may win: no cone holds the point
  and [ROOT] does not compete)."""
  fractions = jnp.linspace(0.0, 1.0, steps)  # of the way to the root
  points = lorentz.geodesic(images[:, None], root, fractions[None], c)  # [m, S, P]
  point_t, text_t = lorentz.time_part(points, c), lorentz.time_part(texts, c)
  with jax.default_matmul_precision("highest"):  # inner products by one matmul
    scores = points @ texts.T - point_t[..., None] * text_t  # [m, S, N]
    root_score = lorentz.inner(points, root, c)  # [m, S]
  inside = (lorentz.oxy_angle_of(scores, text_t, point_t[..., None], lorentz.space_norm(texts),
                                 c)
            <= lorentz.half_aperture(texts, c))
  scores = jnp.where(inside, scores, OUTSIDE_CONE)
  if root_candidate:
    scores = jnp.concatenate([scores, root_score[..., None]], axis=-1)
  nobody = texts.shape[0] + 1
  return jnp.where(inside.any(-1) | root_candidate, jnp.argmax(scores, axis=-1), nobody)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _sphere_winners(images, texts, root, steps, root_candidate):
  """[m, P] image and [N, P] text unit vectors, [P] root -> [m, steps] winner per step, image
  to root (N for [ROOT])."""
  fractions = jnp.linspace(1.0, 0.0, steps)[None, :, None]
  points = fractions * images[:, None] + (1.0 - fractions) * root  # [m, S, P]
  points = points / jnp.maximum(jnp.linalg.norm(points, axis=-1, keepdims=True), 1e-12)
  with jax.default_matmul_precision("highest"):
    scores = points @ texts.T  # [m, S, N]
    if root_candidate:
      scores = jnp.concatenate([scores, (points @ root)[..., None]], axis=-1)
  return jnp.argmax(scores, axis=-1)


def _chains(winners_of, image_emb, num_texts, drop_first, chunk):
  """Chains (general to specific) from `winners_of(images chunk)` -> [m, steps] winners."""
  chains = []
  starts = range(0, len(image_emb), chunk)
  for s in tqdm.tqdm(starts, desc="traversal", leave=False, disable=len(starts) < 2):
    for row in np.asarray(winners_of(jnp.asarray(image_emb[s:s + chunk], jnp.float32))):
      distinct = [int(w) for w in dict.fromkeys(row) if w < num_texts]
      chain = distinct[::-1]  # root to image: general to specific
      chains.append(chain[1:] if drop_first else chain)
  return chains


def traverse_sphere(root, text_emb, image_emb, steps=STEPS, root_candidate=True,
                    drop_first=False, chunk=16):
  """MERU's traversal on the sphere (its CLIP baselines): chains of candidate indices,
  general to specific, one per image: [P] root vector (normalised here), [N, P] text and
  [M, P] image unit vectors; [ROOT] never appears in a chain."""
  root = jnp.asarray(root, jnp.float32)
  root = root / jnp.linalg.norm(root)
  texts = jnp.asarray(text_emb, jnp.float32)
  return _chains(lambda images: _sphere_winners(images, texts, root, steps, root_candidate),
                 image_emb, len(text_emb), drop_first, chunk)


def read_root_vector(path):
  """-> the [P] float32 vector of a file: .npy, .json (a list, or {"root": list} as
  `models.root_file` writes), or a PyTorch .pt/.pth holding one tensor; a one-line
  errors.UserError naming the file otherwise."""
  try:
    if path.endswith(".npy"):
      value = np.load(path, allow_pickle=False)
    elif path.endswith(".json"):
      with open(path, encoding="utf-8") as f:
        value = json.load(f)
      value = value["root"] if isinstance(value, dict) else value
    else:
      value = state_dicts.load_torch_file(path)
      value = value.float().numpy() if hasattr(value, "float") else value
    value = np.asarray(value, np.float32)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f"{path}: not a root vector ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:120] if str(e) else ''}); expected a "
                           ".npy, a .json list or a .pt tensor") from None
  value = value.reshape(-1) if value.ndim == 2 and 1 in value.shape else value
  if value.ndim != 1 or not np.isfinite(value).all() or not np.linalg.norm(value):
    raise errors.UserError(f"{path}: a root vector must be one non-zero row of finite "
                           f"numbers; it has shape {value.shape}")
  return value


def traverse(geometry, text_emb, image_emb, root=None, steps=STEPS, root_candidate=True,
             drop_first=False, chunk=16):
  """Chains of candidate indices, general to specific, one per image: [N, P] text and
  [M, P] image points of `geometry` (a `lorentz.Lorentz`), walked to `root` ([P], None: the
  origin); [ROOT] never appears in a chain, and a step where no candidate may win (no cone
  holds the point, [ROOT] not competing) adds nothing."""
  texts = jnp.asarray(text_emb, jnp.float32)
  root = jnp.zeros(texts.shape[1], jnp.float32) if root is None else jnp.asarray(
      root, jnp.float32)
  return _chains(lambda images: _winners(images, texts, root, geometry.c, steps,
                                         root_candidate),
                 image_emb, len(text_emb), drop_first, chunk)


def chain_metrics(chains, ground_truth):
  """Precision and recall of chains ([M] lists of candidate ids) against [M, G, 4] tier
  candidates of each image's rows (-1 padded), as `hierarchical_retrieval.precision_recall`
  counts levels -> ([M] precision, [M] recall)."""
  precision, recall = [], []
  for chain, gt in zip(chains, ground_truth):
    predicted = set(chain)
    rows = gt[gt[:, 0] >= 0]
    precision.append(len(predicted & set(rows.ravel().tolist())) / max(1, len(chain)))
    recall.append(np.mean([any(int(t) in predicted for t in rows[:, k]) for k in range(4)]))
  return np.asarray(precision), np.asarray(recall)
