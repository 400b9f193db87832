"""Unit-normalised CLIP features of texts and images, in jitted, data-parallel batches."""
import functools

import jax
import numpy as np
import tqdm

from hierre_jax import geometry
from hierre_jax import models
from hierre_jax import sharding
from hierre_jax import tokenizer as tokenizer_lib

# The parameters `encode_text` reads; the vision tower is not needed for texts.
TEXT_PARAM_KEYS = ("text_model", "text_projection", "logit_scale")


def text_params(params):
  return {k: params[k] for k in TEXT_PARAM_KEYS}


def text_encoder(config, remat=False):
  """-> fn(params, ids [N, L]) -> unit-normalised text features [N, P]."""
  model = models.CLIP(config, remat)
  return lambda params, ids: geometry.normalize(
      model.apply({"params": params}, ids, method=models.CLIP.encode_text))


def packed_text_encoder(config, remat=False):
  """-> fn(params, `packing.Packed` of S shards, N texts each) -> unit features [S, N, P]."""
  model = models.CLIP(config, remat)
  return lambda params, packed: geometry.normalize(
      model.apply({"params": params}, packed, method=models.CLIP.encode_packed_text))


def image_encoder(config):
  """-> fn(params, pixels [N, H, W, C]) -> unit-normalised image features [N, P]."""
  model = models.CLIP(config)
  return lambda params, pixels: geometry.normalize(
      model.apply({"params": params}, pixels, method=models.CLIP.encode_image))


def root_ids(tokenizer, length=2):
  """[1, length] ids of the empty string (the RE root text), padded to `length`."""
  return tokenizer_lib.pad(tokenizer_lib.tokenize(tokenizer, [""]), length,
                           tokenizer.pad_token_id)


@functools.lru_cache(maxsize=None)
def _jitted(make_encoder, config, mesh):
  """One jitted encoder per (tower, config, mesh): later calls reuse its compilations."""
  return jax.jit(make_encoder(config), out_shardings=sharding.replicated(mesh))


def _run_batched(fn, params, batches, num_batches, batch_size, mesh, desc):
  """Applies jitted `fn` over an iterable of numpy batches -> concatenated numpy.

  Batches are split over the mesh (over every process of a multi-process mesh, each
  passing the same batches); `fn`'s output is replicated so that every process reads it.
  """
  out = []
  for x in tqdm.tqdm(batches, desc=desc, total=num_batches, leave=False, disable=num_batches < 2):
    n = len(x)
    if n < batch_size:  # pad the last batch so that shapes (and compilations) repeat
      x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
    out.append(np.asarray(fn(params, sharding.put_global_batch(x, mesh)))[:n])
  return np.concatenate(out)


def embed_texts(config, params, tokenizer, texts, batch_size=256, mesh=None, length_multiple=8):
  """Strings -> [N, P] float32 unit features.

  Texts are sorted by length and each batch padded to a multiple of `length_multiple`
  (77: one static shape, one compilation; the better choice on GPU/TPU).
  """
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  ids = tokenizer_lib.tokenize(tokenizer, texts)
  order = np.argsort([len(t) for t in ids], kind="stable")
  batches = []
  for start in range(0, len(order), batch_size):
    chunk = [ids[i] for i in order[start:start + batch_size]]
    length = tokenizer_lib.bucket_length(max(map(len, chunk)), length_multiple)
    batches.append(tokenizer_lib.pad(chunk, length, tokenizer.pad_token_id))
  feats = _run_batched(_jitted(text_encoder, config, mesh), text_params(params), batches,
                       len(batches), batch_size, mesh, "texts")
  out = np.empty_like(feats)
  out[order] = feats
  return out


def embed_images(config, params, pixel_batches, batch_size, num_batches, mesh=None):
  """Iterable of [n <= batch_size, H, W, C] pixel arrays -> [N, P] float32 unit features."""
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  return _run_batched(_jitted(image_encoder, config, mesh), params, pixel_batches, num_batches,
                      batch_size, mesh, "images")
