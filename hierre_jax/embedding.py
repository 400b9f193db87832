"""Unit-normalised features of texts and images by a model family's encoders, in jitted,
data-parallel batches."""
import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hierre_jax import errors
from hierre_jax import image_store
from hierre_jax import models
from hierre_jax import sealed
from hierre_jax import sharding
from hierre_jax.data import images as image_data
from hierre_jax.data import packing
from hierre_jax.data import text as text_ids
from hierre_jax.models import hf_io
from hierre_jax.radial import geometry
from hierre_jax.trainer import checkpointing


def text_params(config, params):
  """The parameter groups the text encoder of `config`'s family reads."""
  return {k: params[k] for k in models.family_of_config(config).text_params}


COMPUTE_DTYPES = ("float32", "bfloat16")


def in_compute_dtype(encode, dtype):
  """fn(params, x) of a family's encoder -> the same computed in `dtype`: "float32" as it
  is; "bfloat16" (mixed precision) with floating parameters and inputs cast to it inside
  the function (the parameters and their gradients stay float32), the output float32."""
  if dtype == "float32":
    return encode
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype {dtype!r}: use one of {', '.join(COMPUTE_DTYPES)}")
  cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return lambda params, x: encode(jax.tree.map(cast, params),
                                  jax.tree.map(cast, x)).astype(jnp.float32)


def text_encoder(config, remat=False, dtype="float32"):
  """-> fn(params, ids [N, L]) -> unit-normalised text features [N, P], computed in `dtype`."""
  encode = in_compute_dtype(models.family_of_config(config).encoders(config, remat).text, dtype)
  return lambda params, ids: geometry.normalize(encode(params, ids))


def packed_text_encoder(config, remat=False, dtype="float32"):
  """-> fn(params, `packing.Packed` of S shards, N texts each) -> unit features [S, N, P]."""
  encode = in_compute_dtype(models.family_of_config(config).encoders(config, remat).packed_text,
                            dtype)
  return lambda params, packed: geometry.normalize(encode(params, packed))


def image_encoder(config, dtype="float32"):
  """-> fn(params, pixels [N, H, W, C]) -> unit-normalised image features [N, P]."""
  encode = in_compute_dtype(models.family_of_config(config).encoders(config).image, dtype)
  return lambda params, pixels: geometry.normalize(encode(params, pixels))


def root_ids(tokenizer, length=2):
  """[1, length] ids of the empty string (the RE root text), padded to `length`."""
  return text_ids.pad(text_ids.tokenize(tokenizer, [""], length), length,
                      tokenizer.pad_token_id)


@functools.lru_cache(maxsize=None)
def _jitted(make_encoder, config, mesh, dtype):
  """One jitted encoder per (tower, config, mesh, compute dtype): later calls reuse its
  compilations."""
  return jax.jit(make_encoder(config, dtype=dtype), out_shardings=sharding.replicated(mesh))


def run_batched(fn, params, batches, num_batches, batch_size, mesh, desc):
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


def embed_texts(config, params, tokenizer, texts, batch_size=256, mesh=None, length_multiple=8,
                pack=True, dtype="float32"):
  """Strings -> [N, P] float32 unit features, computed in `dtype` (`in_compute_dtype`).

  pack: `batch_size` texts per call packed several to a row of the family's maximum length,
  as the train step packs them (each text attends only within itself, positions restart
  per text: its features are those it has alone); every call padded to the same row count
  (one compiled shape). Else sorted by length, each batch padded to a multiple of
  `length_multiple` (77: one static shape, one compilation).
  """
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  family = models.family_of_config(config)
  ids = text_ids.tokenize(tokenizer, texts, family.max_length)
  if pack:
    return _embed_packed(config, params, tokenizer, ids, batch_size, mesh, dtype)
  order = np.argsort([len(t) for t in ids], kind="stable")
  batches = []
  for start in range(0, len(order), batch_size):
    chunk = [ids[i] for i in order[start:start + batch_size]]
    length = text_ids.bucket_length(max(map(len, chunk)), length_multiple, family.max_length)
    batches.append(text_ids.pad(chunk, length, tokenizer.pad_token_id))
  feats = run_batched(_jitted(text_encoder, config, mesh, dtype), text_params(config, params),
                      batches, len(batches), batch_size, mesh, "texts")
  out = np.empty_like(feats)
  out[order] = feats
  return out


def _embed_packed(config, params, tokenizer, ids, batch_size, mesh, dtype):
  """Token id lists -> [N, P] unit features, packed (`embed_texts`)."""
  family = models.family_of_config(config)
  shards = mesh.devices.size
  per_shard = batch_size // shards
  texts = [(np.asarray(t, np.int32), int(family.pool_index(config, np.asarray(t))))
           for t in ids]
  # Texts dealt to the calls shortest first, round robin: every call gets the same mix of
  # lengths, so all need about the same rows and little padding comes from the longest.
  num_calls = -(-len(texts) // batch_size)
  by_length = np.argsort([len(t) for t in ids], kind="stable")
  dealt = [by_length[c::num_calls] for c in range(num_calls)]
  calls = []
  for call in dealt:
    chunk = [texts[i] for i in call]
    chunk += [chunk[0]] * (batch_size - len(chunk))  # filled with its shortest text
    calls.append(packing.pack([chunk[s * per_shard:(s + 1) * per_shard]
                               for s in range(shards)], family.max_length,
                              tokenizer.pad_token_id))
  rows = max((c.ids.shape[1] for c in calls), default=0)
  encode = _jitted(packed_text_encoder, config, mesh, dtype)
  text = text_params(config, params)
  out = np.zeros((len(texts), config.projection_dim), np.float32)
  for call, packed in tqdm.tqdm(zip(dealt, calls), desc="texts", total=num_calls, leave=False,
                                disable=num_calls < 2):
    packed = packing.pad_rows(packed, rows, tokenizer.pad_token_id)
    feats = np.asarray(encode(text, sharding.put_global_batch(packed, mesh)))
    out[call] = feats.reshape(batch_size, -1)[:len(call)]
  return out


def embed_images(config, params, pixel_batches, batch_size, num_batches, mesh=None,
                 dtype="float32"):
  """Iterable of [n <= batch_size, H, W, C] pixel arrays -> [N, P] float32 unit features,
  computed in `dtype`."""
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  return run_batched(_jitted(image_encoder, config, mesh, dtype), params, pixel_batches,
                     num_batches, batch_size, mesh, "images")


IMAGE_FEATURES = "image_features"  # a train workdir's image feature store (`image_store`)


def is_train_workdir(path):
  return (os.path.isdir(os.path.join(path, "checkpoints"))
          and os.path.isdir(os.path.join(path, "model_info")))


def load_model(path):
  """-> (ClipConfig, params, dir with config and tokenizer files, checkpoint step or None).

  Train workdirs use the newest orbax checkpoint that verifies, and workdir/model_info;
  anything else is a Hugging Face directory or hub id. A model with its own RE root (a
  checkpoint's params["root"], a directory's hf_io.ROOT_FILE) has it in
  params["root"].
  """
  if not is_train_workdir(path):
    _, config, params, model_dir = models.load(path)
    root = hf_io.read_root(model_dir, config.projection_dim)
    return config, params if root is None else {**params, "root": root}, model_dir, None
  ckpts = checkpointing.RunCheckpoints(os.path.join(path, "checkpoints"), read_only=True)
  params, step = ckpts.restore_latest_params()
  ckpts.close()
  if step is None:
    raise FileNotFoundError(f"{path}/checkpoints: no finished checkpoint")
  hf_io.check_finite_params(params, f"{path}/checkpoints/{step}")
  info = os.path.join(path, "model_info")
  if os.path.exists(os.path.join(info, sealed.MANIFEST)):  # workdirs since 2026-12-03
    sealed.verify(info)
  family = models.family_of(info)
  config = family.read_config(info, family.has_stacked_layers(params))
  return config, params, info, step


def image_tower_fingerprint(config, params):
  """SHA-1 of the image tower's parameters: Embedders whose image towers (and image
  preprocessing) are equal may share their image features (`Embedder(image_features=)`)."""
  digest = hashlib.sha1()
  groups = models.family_of_config(config).image_groups
  for leaf in jax.tree.leaves({k: params[k] for k in groups}):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def image_store_key(config, params, preprocessing, dtype):
  """Names the features of one image tower (`image_tower_fingerprint`), preprocessing and
  arithmetic (compute dtype, JAX's default matmul precision and backend): 16 hex digits."""
  text = json.dumps([config.family, image_tower_fingerprint(config, params), repr(preprocessing),
                     dtype, str(jax.config.jax_default_matmul_precision), jax.default_backend()])
  return hashlib.sha1(text.encode()).hexdigest()[:16]


def open_image_store(folder, config, params, preprocessing, dtype="float32"):
  """The `image_store.ImageFeatureStore` of this image tower in `folder` (process 0 writes
  it; every process reads it once, now, and then keeps the same features)."""
  return image_store.ImageFeatureStore(
      folder, image_store_key(config, params, preprocessing, dtype), config.projection_dim,
      writable=jax.process_index() == 0)


class Embedder:
  """Embeds texts (with the root) and images with one model's parameters.

  The root is `params["root"]` where the model has its own (see `load_model`), else the
  embedding of the empty string.

  `mesh`: the devices to split batches over; default this process's devices. Inside a
  multi-process run pass the global mesh: every process then calls the same methods.
  `image_features`: a {path: [P] features} dict to read and fill, shared with Embedders of
  the same image tower and preprocessing (see `image_tower_fingerprint`), or an
  `image_store.ImageFeatureStore` (`open_image_store`) that keeps them on disk.
  `pack_texts`: texts packed several to a row (`embed_texts`), else padded per batch to a
  multiple of `length_multiple`. `image_workers`: threads decoding images ahead of the
  device (`data.images.load_batches`; 0: one per CPU). `compute_dtype`: "float32" or
  "bfloat16" (`in_compute_dtype`).
  """

  def __init__(self, config, params, model_dir, text_batch_size=256, image_batch_size=64,
               length_multiple=8, mesh=None, image_features=None, pack_texts=True,
               image_workers=0, compute_dtype="float32"):
    self.mesh = mesh or sharding.make_mesh(jax.local_devices())
    self.config, self.model_dir = config, model_dir
    params = dict(params)
    self.root = params.pop("root", None)
    if self.root is not None:
      self.root = np.asarray(self.root, np.float32)
    self.params = jax.device_put(params, sharding.replicated(self.mesh))
    family = models.family_of_config(config)
    self.tokenizer = family.load_tokenizer(model_dir)
    self.text_batch_size, self.image_batch_size = text_batch_size, image_batch_size
    self.length_multiple, self.pack_texts = length_multiple, pack_texts
    self.image_workers, self.compute_dtype = image_workers, compute_dtype
    self.preprocessing = family.preprocessing(model_dir, config)
    self.checkpoint_step = None  # set by from_path for a train workdir
    self._image_features = {} if image_features is None else image_features  # path -> [P]
    self._text_features = {}  # string -> [P]

  @classmethod
  def from_path(cls, model_path, text_batch_size=256, image_batch_size=64, length_multiple=8,
                pack_texts=True, image_workers=0, compute_dtype="float32",
                image_features_dir=None):
    """An Embedder of a Hugging Face directory or hub id, or of a train workdir's newest
    verified checkpoint (its step in `checkpoint_step`). Image features are kept on disk in
    `image_features_dir` (None: a train workdir's own store, whose frozen image tower its
    training and evaluations already embedded; "": in memory only)."""
    config, params, model_dir, step = load_model(model_path)
    if image_features_dir is None:
      image_features_dir = (os.path.join(model_path, IMAGE_FEATURES)
                            if is_train_workdir(model_path) else "")
    embedder = cls(config, params, model_dir, text_batch_size, image_batch_size, length_multiple,
                   pack_texts=pack_texts, image_workers=image_workers,
                   compute_dtype=compute_dtype)
    if image_features_dir:  # keyed by the embedder's own preprocessing, read once
      embedder._image_features = open_image_store(image_features_dir, config, params,
                                                  embedder.preprocessing, compute_dtype)
    embedder.checkpoint_step = step
    return embedder

  def texts(self, texts):
    """-> ([N, P] unit text features, [P] root: the model's own or the empty string's).

    Features are kept per string for the Embedder's life (its parameters never change), so
    a text is embedded once however many evaluations ask for it (the HierarCaps test
    captions are also COCO captions) and repeats within a call cost nothing.
    """
    texts = list(texts) + ([""] if self.root is None else [])
    new = [t for t in dict.fromkeys(texts) if t not in self._text_features]
    if new:
      feats = embed_texts(self.config, self.params, self.tokenizer, new, self.text_batch_size,
                          self.mesh, self.length_multiple, self.pack_texts, self.compute_dtype)
      errors.require_finite(feats, f"{self.model_dir}: the text features (root included) of "
                            f"{len(new)} texts")
      self._text_features.update(zip(new, feats))
    feats = np.stack([self._text_features[t] for t in texts]) if texts else np.zeros(
        (0, self.config.projection_dim), np.float32)
    return (feats[:-1], feats[-1]) if self.root is None else (feats, self.root)

  def images(self, images):
    """Image paths or PIL images -> [N, P] unit features.

    Features of paths are kept for the Embedder's life (P floats per image: 50,000 images
    at P=768 take 150 MB), so evaluations that share images (HierarCaps and the COCO 1K
    subset, the four BREEDS sets) embed each image once.
    """
    if not all(isinstance(p, str) for p in images):
      return self._embed_images(images)
    distinct = list(dict.fromkeys(images))
    missing = [p for p in distinct if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[:3]}")
    new = [p for p in distinct if p not in self._image_features]
    if new:
      self._image_features.update(zip(new, self._embed_images(new)))
    return np.stack([self._image_features[p] for p in images])

  def _embed_images(self, images):
    batches = image_data.load_batches(images, self.preprocessing, self.image_batch_size,
                                      self.image_workers or None)
    feats = embed_images(self.config, self.params, batches, self.image_batch_size,
                         -(-len(images) // self.image_batch_size), self.mesh, self.compute_dtype)
    return errors.require_finite(feats, f"{self.model_dir}: the image features of "
                                 f"{len(images)} images")
