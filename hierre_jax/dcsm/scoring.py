"""DCSM as a pair scorer: per-item maps of one image with its K captions, functional rows,
z-scored over the item's (1, K, rows, 30) block (DCSM_SPEC section 4), scored by the CNN."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax import errors
from hierre_jax.data import indexing
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import scorer as scorer_lib


def score_maps(params, maps_):
  """maps [..., R, T] (already standardised) -> scores [...] by the CNN, dropout off."""
  flat = maps_.reshape(-1, *maps_.shape[-2:])
  return scorer_lib.Scorer().apply({"params": params}, flat).reshape(maps_.shape[:-2])


@functools.partial(jax.jit, static_argnames="options")
def score_items(params, image_tokens, text_tokens, sources, table, options):
  """image_tokens [N, R, P], text_tokens [N, K, T, P], sources [N, K, T] -> scores [N, K]."""
  item_maps = jnp.einsum("nrp,nktp->nkrt", image_tokens, text_tokens)
  if options.functional_rows:
    item_maps = maps.with_functional_rows(item_maps, sources, table)
  per_item = jax.vmap(lambda m: maps.standardize(m, options.per_map))(item_maps)
  return score_maps(params, per_item)


class DenseScorer:
  """score(images, captions) -> [N, K] DCSM scores of a frozen model's `maps.TokenFeatures`
  with a scorer's params, functional table and `maps.MapOptions`."""

  def __init__(self, features, params, table, options):
    options.check()
    if table.shape[1] != features.rows:
      raise errors.UserError(f"the scorer reads maps of {table.shape[1]} rows; the model "
                             f"gives {features.rows} image tokens: it was trained on another "
                             "backbone (its dcsm.json names it)")
    self.features, self.params, self.options = features, params, options
    self.table = jnp.asarray(table)

  def score(self, images, captions):
    image_tokens = self.features.images(images)
    unique, rows = indexing.index_rows(captions)
    text_tokens = self.features.texts(unique)
    sources = np.stack([maps.column_sources(c, self.features.tokenizer,
                                            self.options.column_rule) for c in unique])
    return np.asarray(score_items(self.params, image_tokens, text_tokens[rows], sources[rows],
                                  self.table, self.options))
