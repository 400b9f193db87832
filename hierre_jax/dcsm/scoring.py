"""DCSM as a pair scorer: per-item maps of one image with its K captions, functional rows,
z-scored over the item's (1, K, rows, 30) block (DCSM_SPEC section 4), scored by the CNN;
`score` gives every image against every caption (the release's get_dcsm_scores; its z-score
over all images' maps as an option)."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hierre_jax.common import errors
from hierre_jax.data import indexing
from hierre_jax.dcsm import checkpoint
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import scorer as scorer_lib


def score_maps(params, maps_):
  """maps [..., R, T] (already standardised) -> scores [...] by the CNN, dropout off."""
  flat = maps_.reshape(-1, *maps_.shape[-2:])
  return scorer_lib.Scorer().apply({"params": params}, flat).reshape(maps_.shape[:-2])


@functools.partial(jax.jit, static_argnames="options")
def item_maps(image_tokens, text_tokens, sources, table, options):
  """image_tokens [N, R, P], text_tokens [N, K, T, P], sources [N, K, T] -> maps [N, K, R, T]
  with the functional rows `options` asks for (not z-scored)."""
  out = jnp.einsum("nrp,nktp->nkrt", image_tokens, text_tokens)
  return maps.with_functional_rows(out, sources, table) if options.functional_rows else out


@functools.partial(jax.jit, static_argnames="options")
def score_items(params, image_tokens, text_tokens, sources, table, options):
  """image_tokens [N, R, P], text_tokens [N, K, T, P], sources [N, K, T] -> scores [N, K],
  each item's [K, R, T] maps z-scored as one."""
  per_item = jax.vmap(lambda m: maps.standardize(m, options.per_map))(
      item_maps(image_tokens, text_tokens, sources, table, options))
  return score_maps(params, per_item)


@jax.jit
def score_standardized(params, maps_, mean, std):
  """maps [N, K, R, T] z-scored with a given mean and std -> scores [N, K]."""
  return score_maps(params, (maps_ - mean) / std)


ZSCORE_BLOCKS = ("image", "all")


class DenseScorer:
  """score(images, captions) -> [N, K] DCSM scores of a frozen model's `maps.TokenFeatures`
  with a scorer's params, functional table and `maps.MapOptions`."""

  def __init__(self, features, params, table, options):
    options.check()
    if table.shape[0] != len(options.functional_words):
      raise errors.UserError(f"the functional table has {table.shape[0]} rows for "
                             f"{len(options.functional_words)} functional words")
    if table.shape[1] != features.rows:
      raise errors.UserError(f"the scorer reads maps of {table.shape[1]} rows; the model "
                             f"gives {features.rows} image tokens: it was trained on another "
                             "backbone (its dcsm.json names it)")
    self.features, self.params, self.options = features, params, options
    self.table = jnp.asarray(table)

  def captions(self, captions):
    """C strings -> ([C, 30, P] unit token features, [C, 30] functional-word sources)."""
    sources = np.stack([maps.column_sources(c, self.features.tokenizer,
                                            self.options.column_rule,
                                            self.options.functional_words) for c in captions])
    return self.features.texts(captions), sources

  def score(self, images, captions):
    """N images (paths or PIL), N tuples of K captions -> [N, K]."""
    image_tokens = self.features.images(images)
    unique, rows = indexing.index_rows(captions)
    text_tokens, sources = self.captions(unique)
    return np.asarray(score_items(self.params, image_tokens, text_tokens[rows], sources[rows],
                                  self.table, self.options))

  def score_all(self, images, captions, pairs_per_call=256, zscore="image"):
    """I images x T captions -> [I, T], the captions embedded once, about `pairs_per_call`
    pairs a call. `zscore`: "image", each image one item of all T captions (its (1, T, rows,
    30) block z-scored as one, as an evaluation item: an image's scores do not depend on the
    other images); "all", the whole (I, T, rows, 30) block z-scored as one, as the release's
    get_dcsm_scores (two passes: the block's mean and unbiased std, then the scores; the
    image tokens kept in between)."""
    if zscore not in ZSCORE_BLOCKS:
      raise errors.UserError(f"zscore={zscore!r}: use one of {', '.join(ZSCORE_BLOCKS)}")
    text_tokens, sources = self.captions(list(captions))
    step = max(1, pairs_per_call // len(captions))

    def items(image_tokens):  # the chunk's images, each with all T captions
      n = len(image_tokens)
      return (image_tokens, jnp.broadcast_to(text_tokens, (n, *text_tokens.shape)),
              np.broadcast_to(sources, (n, *sources.shape)), self.table, self.options)

    per_image = zscore == "image" or self.options.per_map  # (per_map: each map alone)
    out = []  # per image: the chunks' scores; else the chunks' image tokens
    for start in tqdm.trange(0, len(images), step, desc="dcsm scores", leave=False,
                             disable=len(images) <= step):
      image_tokens = self.features.images(images[start:start + step])
      out.append(np.asarray(score_items(self.params, *items(image_tokens))) if per_image
                 else image_tokens)
    if per_image:
      return np.concatenate(out)
    total = squares = count = 0.0
    for image_tokens in out:
      block = np.asarray(item_maps(*items(image_tokens)), np.float64)
      total, squares, count = total + block.sum(), squares + (block ** 2).sum(), count + block.size
    mean = total / count
    std = np.sqrt((squares - count * mean ** 2) / (count - 1))
    return np.concatenate([np.asarray(score_standardized(
        self.params, item_maps(*items(image_tokens)), np.float32(mean), np.float32(std)))
        for image_tokens in out])


def load(model, scorer, batch_size=32, column_rule=""):
  """-> (DenseScorer, the scorer's info dict): `model` a CLIP directory, hub id or train
  workdir; `scorer` a scorer folder or the released .pt; `column_rule` "" for the one the
  scorer was trained with (DCSM_SPEC section 3)."""
  params, table, info = checkpoint.load(scorer)
  checkpoint.check_backbone(info, model, scorer)
  options = maps.MapOptions(column_rule or info.get("column_rule", "release"),
                            info.get("functional_rows", True),
                            per_map=info.get("per_map", False),
                            functional_words=tuple(checkpoint.functional_words(info)))
  return DenseScorer(maps.TokenFeatures(model, batch_size), params, table, options), info


def score(model, scorer, images, captions, batch_size=32, column_rule="", zscore="image"):
  """DCSM scores of every image against every caption, as the release's get_dcsm_scores:
  [I] images (paths or PIL images) x [T] caption strings (scored as given: no benchmark's
  rewrites) -> [I, T] float32. `zscore`: "image" (default) z-scores each image's maps as one
  evaluation item, so that an image's scores do not depend on the others; "all" z-scores all
  images' maps at once, as get_dcsm_scores does (the same for one image). `column_rule`: ""
  for the scorer's own (DCSM_SPEC section 3); get_dcsm_scores, in the release's notebook,
  inserts the functional column ("insert"): zscore="all", column_rule="insert" compute what
  it computes. `model`, `scorer`: as `load` takes them (load once and call
  `DenseScorer.score_all` to score many sets)."""
  if isinstance(images, (str, bytes, os.PathLike)):
    raise errors.UserError(f"images: expected a list of image paths or PIL images, got the "
                           f"one path {images!r} (pass [{images!r}])")
  if isinstance(captions, str) or not all(isinstance(c, str) and c for c in captions):
    raise errors.UserError("captions: expected a list of non-empty strings")
  if not len(images) or not len(captions):
    raise errors.UserError(f"nothing to score: {len(images)} images, {len(captions)} captions")
  return load(model, scorer, batch_size, column_rule)[0].score_all(list(images), captions,
                                                                 zscore=zscore)
