"""Features of texts and images by a `models.Model`'s encoders, lifted into its geometry
(unit vectors on the sphere), in jitted, data-parallel batches."""
import dataclasses
import hashlib
import json
import os

import jax
import numpy as np
import tqdm

from hierre_jax.common import errors
from hierre_jax.common import image_store
from hierre_jax.common import sharding
from hierre_jax.data import images as image_data
from hierre_jax.data import packing
from hierre_jax.data import text as text_ids


def text_encoder(model, remat=False, dtype="float32"):
  """-> fn(params, ids [N, L]) -> text features [N, P] lifted into the model's geometry (on
  the sphere: unit vectors), computed in `dtype`."""
  encode, lift = model.encoders(remat, dtype).text, model.geometry.lift
  return lambda params, ids: lift(encode(params, ids))


def packed_text_encoder(model, remat=False, dtype="float32"):
  """-> fn(params, `packing.Packed` of S shards, N texts each) -> lifted features [S, N, P]."""
  encode, lift = model.encoders(remat, dtype).packed_text, model.geometry.lift
  return lambda params, packed: lift(encode(params, packed))


def image_encoder(model, dtype="float32"):
  """-> fn(params, pixels [N, H, W, C]) -> lifted image features [N, P]."""
  encode, lift = model.encoders(dtype=dtype).image, model.geometry.lift
  return lambda params, pixels: lift(encode(params, pixels))


def root_ids(tokenizer, length=2):
  """[1, length] ids of the empty string (the RE root text), padded to `length`."""
  return text_ids.pad(text_ids.tokenize(tokenizer, [""], length), length,
                      tokenizer.pad_token_id)


_JITTED = {}


def _jitted(make_encoder, model, mesh, dtype):
  """One jitted encoder per (tower, family, config, geometry, mesh, compute dtype): later
  calls, with any parameters, reuse its compilations."""
  key = (make_encoder, model.family, model.config, model.geometry, mesh, dtype)
  if key not in _JITTED:
    _JITTED[key] = jax.jit(make_encoder(model, dtype=dtype),
                           out_shardings=sharding.replicated(mesh))
  return _JITTED[key]


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


def embed_texts(model, params, texts, batch_size=256, mesh=None, length_multiple=8, pack=True,
                dtype="float32"):
  """Strings -> [N, P] float32 lifted features of `model`'s text tower with `params`,
  computed in `dtype` (`models.model.in_compute_dtype`).

  pack: `batch_size` texts per call packed several to a row of the family's maximum length,
  as the train step packs them (each text attends only within itself, positions restart
  per text: its features are those it has alone); every call padded to the same row count
  (one compiled shape). Else sorted by length, each batch padded to a multiple of
  `length_multiple` (the maximum length: one static shape, one compilation).
  """
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  ids = text_ids.tokenize(model.tokenizer, texts, model.max_length)
  if pack:
    return _embed_packed(model, params, ids, batch_size, mesh, dtype)
  order = np.argsort([len(t) for t in ids], kind="stable")
  batches = []
  for start in range(0, len(order), batch_size):
    chunk = [ids[i] for i in order[start:start + batch_size]]
    length = text_ids.bucket_length(max(map(len, chunk)), length_multiple, model.max_length)
    batches.append(text_ids.pad(chunk, length, model.tokenizer.pad_token_id))
  feats = run_batched(_jitted(text_encoder, model, mesh, dtype), model.text_params(params),
                      batches, len(batches), batch_size, mesh, "texts")
  out = np.empty_like(feats)
  out[order] = feats
  return out


def _embed_packed(model, params, ids, batch_size, mesh, dtype):
  """Token id lists -> [N, P] lifted features, packed (`embed_texts`)."""
  shards = mesh.devices.size
  per_shard = batch_size // shards
  pad_id = model.tokenizer.pad_token_id
  texts = [(np.asarray(t, np.int32), int(model.pool_index(np.asarray(t)))) for t in ids]
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
                               for s in range(shards)], model.max_length, pad_id))
  rows = max((c.ids.shape[1] for c in calls), default=0)
  encode = _jitted(packed_text_encoder, model, mesh, dtype)
  text = model.text_params(params)
  out = np.zeros((len(texts), model.embedding_size), np.float32)
  for call, packed in tqdm.tqdm(zip(dealt, calls), desc="texts", total=num_calls, leave=False,
                                disable=num_calls < 2):
    packed = packing.pad_rows(packed, rows, pad_id)
    feats = np.asarray(encode(text, sharding.put_global_batch(packed, mesh)))
    out[call] = feats.reshape(batch_size, -1)[:len(call)]
  return out


def embed_images(model, params, pixel_batches, batch_size, num_batches, mesh=None,
                 dtype="float32"):
  """Iterable of [n <= batch_size, H, W, C] pixel arrays -> [N, P] float32 lifted features of
  `model`'s image tower with `params`, computed in `dtype`."""
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  return run_batched(_jitted(image_encoder, model, mesh, dtype), params, pixel_batches,
                     num_batches, batch_size, mesh, "images")


IMAGE_FEATURES = "image_features"  # a train workdir's image feature store (`image_store`)


def image_tower_fingerprint(model):
  """SHA-1 of the image tower's parameters: Embedders whose image towers (and image
  preprocessing) are equal may share their image features (`Embedder(image_features=)`)."""
  digest = hashlib.sha1()
  groups = {k: model.params[k] for k in model.family.image_groups if k in model.params}
  for leaf in jax.tree.leaves(groups):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def image_store_key(model, dtype):
  """Names the features of one image tower (`image_tower_fingerprint`), preprocessing (its
  repr, `family.ImagePreprocessing`) and arithmetic (compute dtype, JAX's default matmul
  precision and backend): 16 hex digits."""
  text = json.dumps([model.family.name, image_tower_fingerprint(model), repr(model.preprocessing),
                     dtype, str(jax.config.jax_default_matmul_precision), jax.default_backend()])
  return hashlib.sha1(text.encode()).hexdigest()[:16]


def open_image_store(folder, model, dtype="float32"):
  """The `image_store.ImageFeatureStore` of `model`'s image tower in `folder` (process 0
  writes it; every process reads it once, now, and then keeps the same features)."""
  return image_store.ImageFeatureStore(folder, image_store_key(model, dtype),
                                       model.embedding_size,
                                       writable=jax.process_index() == 0)


ROOTS = ("origin", "empty_string")  # a hyperbolic model's root (`EmbedOptions`)


@dataclasses.dataclass(frozen=True)
class EmbedOptions:
  """How an Embedder computes: texts per call (`text_batch_size`), packed several to a row
  (`pack_texts`, `embed_texts`) or padded per batch to a multiple of `length_multiple`;
  images per call and threads decoding them ahead of the device (`image_workers`, 0: one per
  CPU; `data.images.load_batches`); "float32" or "bfloat16" (`compute_dtype`); the root of a
  hyperbolic model without its own (`hyperbolic_root`: "origin", MERU's mapping, or
  "empty_string", RE's; FAMILIES_SPEC 1.5)."""
  text_batch_size: int = 256
  image_batch_size: int = 64
  length_multiple: int = 8
  pack_texts: bool = True
  image_workers: int = 0
  compute_dtype: str = "float32"
  hyperbolic_root: str = "origin"

  @classmethod
  def from_config(cls, config):
    """The options of a train config (its eval sub-config, length_multiple, compute_dtype;
    a hyperbolic model is evaluated with the root it trains with)."""
    e = config.eval
    return cls(e.text_batch_size, e.image_batch_size, config.length_multiple, e.pack_texts,
               e.image_workers, config.compute_dtype,
               "empty_string" if config.root == "empty_string" else "origin")


class Embedder:
  """Embeds texts (with the root) and images with one `models.Model`.

  The root is `model.params["root"]` where the model has its own, else the embedding of the
  empty string; a hyperbolic model's is the origin unless options.hyperbolic_root says
  "empty_string" (`root_source` says which).

  `options`: `EmbedOptions`. `mesh`: the devices to split batches over; default this
  process's devices. Inside a multi-process run pass the global mesh: every process then
  calls the same methods. `image_features`: a {path: [P] features} dict to read and fill,
  shared with Embedders of the same image tower and preprocessing (see
  `image_tower_fingerprint`), or an `image_store.ImageFeatureStore` (`open_image_store`)
  that keeps them on disk.
  """

  def __init__(self, model, options=EmbedOptions(), mesh=None, image_features=None):
    self.mesh = mesh or sharding.make_mesh(jax.local_devices())
    self.model, self.options = model, options
    model.tokenizer, model.preprocessing  # pylint: disable=pointless-statement (fail now)
    params = dict(model.params)
    self.root = params.pop("root", None)
    self.root_source = "model" if self.root is not None else "empty_string"
    if self.root is None and model.geometry.has_origin:
      if options.hyperbolic_root not in ROOTS:
        raise errors.UserError(f"hyperbolic_root={options.hyperbolic_root!r}: use one of "
                               f"{ROOTS}")
      if options.hyperbolic_root == "origin":
        self.root, self.root_source = np.zeros(model.embedding_size, np.float32), "origin"
    if self.root is not None:
      self.root = np.asarray(self.root, np.float32)
    self.params = jax.device_put(params, sharding.replicated(self.mesh))
    self._image_features = {} if image_features is None else image_features  # path -> [P]
    self._other_image_features = {}  # repr of another preprocessing -> {path: [P]}
    self._text_features = {}  # string -> [P]

  @property
  def geometry(self):
    return self.model.geometry

  @property
  def checkpoint_step(self):
    return self.model.checkpoint_step

  def texts(self, texts):
    """-> ([N, P] text features, [P] root: the model's own or the empty string's).

    Features are kept per string for the Embedder's life (its parameters never change), so
    a text is embedded once however many evaluations ask for it (the HierarCaps test
    captions are also COCO captions) and repeats within a call cost nothing.
    """
    texts = list(texts) + ([""] if self.root is None else [])
    new = [t for t in dict.fromkeys(texts) if t not in self._text_features]
    if new:
      o = self.options
      feats = embed_texts(self.model, self.params, new, o.text_batch_size, self.mesh,
                          o.length_multiple, o.pack_texts, o.compute_dtype)
      errors.require_finite(feats, f"{self.model.model_dir}: the text features (root "
                            f"included) of {len(new)} texts")
      self._text_features.update(zip(new, feats))
    feats = np.stack([self._text_features[t] for t in texts]) if texts else np.zeros(
        (0, self.model.embedding_size), np.float32)
    return (feats[:-1], feats[-1]) if self.root is None else (feats, self.root)

  def images(self, images, use="classification"):
    """Image paths or PIL images -> [N, P] image features, preprocessed for `use` (one of
    `models.family.IMAGE_USES`).

    Features of paths are kept for the Embedder's life (P floats per image: 50,000 images
    at P=768 take 150 MB), so evaluations that share images (HierarCaps and the COCO 1K
    subset, the four BREEDS sets) embed each image once; those of a use whose
    preprocessing is not the model's default are kept in memory only.
    """
    preprocessing = self.model.preprocessing_for(use)
    if not all(isinstance(p, str) for p in images):
      return self._embed_images(images, preprocessing)
    distinct = list(dict.fromkeys(images))
    missing = [p for p in distinct if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[:3]}")
    kept = (self._image_features if repr(preprocessing) == repr(self.model.preprocessing)
            else self._other_image_features.setdefault(repr(preprocessing), {}))
    new = [p for p in distinct if p not in kept]
    if new:
      kept.update(zip(new, self._embed_images(new, preprocessing)))
    return np.stack([kept[p] for p in images])

  def _embed_images(self, images, preprocessing):
    o = self.options
    batches = image_data.load_batches(images, preprocessing, o.image_batch_size,
                                      o.image_workers or None)
    feats = embed_images(self.model, self.params, batches, o.image_batch_size,
                         -(-len(images) // o.image_batch_size), self.mesh, o.compute_dtype)
    return errors.require_finite(feats, f"{self.model.model_dir}: the image features of "
                                 f"{len(images)} images")
