"""Batched 50-radius hierarchical retrieval and the HierarCaps metrics (SPEC section 4).

Candidates are distinct texts (string identity), their embeddings `E` [N, D],
radii `R` [N] from the root. For every image and every level t, the prediction
is the candidate of highest similarity among those with R <= t. All images and
all levels are computed at once: candidates are sorted by radius, so each
level's admissible set is a prefix, the union of the segments of texts that enter at
each level; the best (similarity, index) of each segment, then a running best over the
50 segments answers every level (a scan over 50 values, not over the N candidates:
about a quarter of the compile time).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hierre_jax.geometry import sphere

NUM_LEVELS = 50


def radius_levels(radii, num_levels=NUM_LEVELS):
  """[N] -> [num_levels] evenly spaced from min to max radius, both included: computed in
  float64 and rounded to the radii's dtype, as the release does (a float32 linspace
  differs by 1 ulp at some levels, which can move a text across a level)."""
  return np.linspace(np.float64(radii.min()), np.float64(radii.max()),
                     num_levels).astype(radii.dtype)


def _better(a, b):
  """Associative 'best of' on (similarity, index): higher similarity, then lower index."""
  (va, ia), (vb, ib) = a, b
  take_b = (vb > va) | ((vb == va) & (ib < ia))
  return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _retrieve_chunk(images, sorted_emb, sorted_index, segment, num_levels, geometry):
  """[m, D] x [N, D] -> [m, L] index (original order) of the best text per level, by
  `geometry.similarity`. segment: [N] the first level whose admissible set holds each
  sorted text."""
  # Full fp32 even where the default is TF32/bf16 passes (GPU, TPU): near-ties decide levels.
  with jax.default_matmul_precision("highest"):
    sims = geometry.similarity(images, sorted_emb)  # [m, N]
  per_image = lambda reduce: jax.vmap(lambda x: reduce(x, segment, num_levels))
  best_sim = per_image(jax.ops.segment_max)(sims)  # [m, L]; -inf for an empty segment
  is_best = sims == best_sim[:, segment]
  lowest = per_image(jax.ops.segment_min)(jnp.where(is_best, sorted_index,
                                                    jnp.iinfo(jnp.int32).max))
  _, best = jax.lax.associative_scan(_better, (best_sim, lowest), axis=1)
  return best


def retrieve(text_emb, radii, image_emb, num_levels=NUM_LEVELS, chunk=256,
             geometry=sphere.SPHERE):
  """Predictions per level: [N, D], [N], [M, D] -> [M, num_levels] int candidate indices,
  the most similar (`geometry.similarity`) of the texts within each level's radius.

  Memory is O(chunk * N): raise or lower `chunk` for the candidate set size.
  """
  order = np.argsort(radii, kind="stable")
  levels = radius_levels(radii, num_levels)
  # Last sorted position with R <= t, per level (>= 0: the smallest radius is a level; the
  # largest is the last level, so every text has a segment).
  prefix_ends = np.searchsorted(radii[order], levels, side="right") - 1
  segment = np.searchsorted(prefix_ends, np.arange(len(order)), side="left")
  args = (jnp.asarray(text_emb[order]), jnp.asarray(order, jnp.int32),
          jnp.asarray(segment, jnp.int32), num_levels, geometry)
  chunks = range(0, len(image_emb), chunk)
  out = [np.asarray(_retrieve_chunk(jnp.asarray(image_emb[s:s + chunk]), *args))
         for s in tqdm.tqdm(chunks, desc="retrieval", leave=False, disable=len(chunks) < 2)]
  return np.concatenate(out)


def first_of_runs(preds):
  """[M, L] -> bool [M, L]: True where a prediction differs from the previous level's."""
  keep = np.ones(preds.shape, bool)
  keep[:, 1:] = preds[:, 1:] != preds[:, :-1]
  return keep


def prediction_chains(preds):
  """[M, L] -> list of M lists of candidate indices, consecutive repeats removed."""
  keep = first_of_runs(preds)
  return [list(p[k]) for p, k in zip(preds, keep)]


def precision_and_tiers_found(preds, ground_truth):
  """Per-image precision, and which tiers were found.

  preds: [M, L] candidate indices per level. ground_truth: [M, G, 4] candidate
  indices of the tier texts of every row of each image (rows padded with -1).
  Returns ([M] precision, [M, 4] bool: some row's tier-k text was predicted).
  """
  keep = first_of_runs(preds)  # a text never returns once left (the admissible set only grows)
  hit = (preds[:, :, None, None] == ground_truth[:, None]) & keep[:, :, None, None]
  pred_is_gt = hit.any(axis=(2, 3))  # [M, L]
  precision = pred_is_gt.sum(1) / np.maximum(1, keep.sum(1))
  return precision, hit.any(axis=1).any(axis=1)


def precision_recall(preds, ground_truth):
  """([M] precision, [M] recall: the share of the 4 tiers found) per image (arguments as
  `precision_and_tiers_found`)."""
  precision, tiers_found = precision_and_tiers_found(preds, ground_truth)
  return precision, tiers_found.mean(1)


def kendall_tau_vs_order(values, ties="release"):
  """[R, K] -> [R] Kendall's tau between each row and 1..K.

  ties="release" (the authors' evaluation): the row is ranked with a stable sort, so
  equal values count as being in order (a constant row scores 1.0). ties="tau_b":
  Kendall's tau-b, NaN for a constant row.
  """
  k = values.shape[1]
  i, j = np.triu_indices(k, 1)
  diff = values[:, j] - values[:, i]  # concordant with 1..K when > 0
  pairs = len(i)
  if ties == "release":
    return np.where(diff >= 0, 1.0, -1.0).sum(1) / pairs
  if ties != "tau_b":
    raise ValueError(f"ties={ties!r}: use 'release' or 'tau_b'")
  sign = np.sign(diff)
  tied = (sign == 0).sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return sign.sum(1) / np.sqrt((pairs - tied) * pairs)


def group_rows_by_image(row_images):
  """Row image names -> (sorted distinct images, [M, G] row indices per image padded with -1)."""
  images = sorted(set(row_images))
  where = {name: i for i, name in enumerate(images)}
  rows = [[] for _ in images]
  for r, name in enumerate(row_images):
    rows[where[name]].append(r)
  table = np.full((len(images), max(map(len, rows))), -1, np.int64)
  for m, rs in enumerate(rows):
    table[m, :len(rs)] = rs
  return images, table


def ground_truth_indices(rows_table, row_tier_index):
  """[M, G] row ids (-1 pad), [R, 4] candidate ids -> [M, G, 4] candidate ids (-1 pad)."""
  gt = row_tier_index[np.maximum(rows_table, 0)]
  gt[rows_table < 0] = -1
  return gt


def hierarcaps_metrics(preds, rows_table, row_tier_index, radii, ties="release"):
  """P, R (means over images) and tau_d (mean over rows; `ties` as in kendall_tau_vs_order)
  as a dict, plus the per-item arrays behind them: [M] precision, [M, 4] tiers found per
  image (R is their mean), [R] tau of each row."""
  precision, tiers_found = precision_and_tiers_found(
      preds, ground_truth_indices(rows_table, row_tier_index))
  tau = kendall_tau_vs_order(radii[row_tier_index], ties)
  return {"precision": float(precision.mean()), "recall": float(tiers_found.mean(1).mean()),
          "tau_d": float(np.nanmean(tau)), "tau_d_ties": ties,
          "tau_d_undefined_rows": int(np.isnan(tau).sum()),
          "num_images": len(preds), "num_rows": len(row_tier_index),
          "num_candidates": len(radii)}, precision, tiers_found, tau

