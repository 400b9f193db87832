"""Unit-normalised features of texts and images by a model family's encoders, in jitted,
data-parallel batches."""
import functools
import hashlib
import os

import jax
import numpy as np
import tqdm

from hierre_jax import errors
from hierre_jax import models
from hierre_jax import sharding
from hierre_jax.data import images as image_data
from hierre_jax.data import text as text_ids
from hierre_jax.models import hf_io
from hierre_jax.radial import geometry
from hierre_jax.trainer import checkpointing


def text_params(config, params):
  """The parameter groups the text encoder of `config`'s family reads."""
  return {k: params[k] for k in models.family_of_config(config).text_params}


def text_encoder(config, remat=False):
  """-> fn(params, ids [N, L]) -> unit-normalised text features [N, P]."""
  encode = models.family_of_config(config).encoders(config, remat).text
  return lambda params, ids: geometry.normalize(encode(params, ids))


def packed_text_encoder(config, remat=False):
  """-> fn(params, `packing.Packed` of S shards, N texts each) -> unit features [S, N, P]."""
  encode = models.family_of_config(config).encoders(config, remat).packed_text
  return lambda params, packed: geometry.normalize(encode(params, packed))


def image_encoder(config):
  """-> fn(params, pixels [N, H, W, C]) -> unit-normalised image features [N, P]."""
  encode = models.family_of_config(config).encoders(config).image
  return lambda params, pixels: geometry.normalize(encode(params, pixels))


def root_ids(tokenizer, length=2):
  """[1, length] ids of the empty string (the RE root text), padded to `length`."""
  return text_ids.pad(text_ids.tokenize(tokenizer, [""], length), length,
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
  max_length = models.family_of_config(config).max_length
  ids = text_ids.tokenize(tokenizer, texts, max_length)
  order = np.argsort([len(t) for t in ids], kind="stable")
  batches = []
  for start in range(0, len(order), batch_size):
    chunk = [ids[i] for i in order[start:start + batch_size]]
    length = text_ids.bucket_length(max(map(len, chunk)), length_multiple, max_length)
    batches.append(text_ids.pad(chunk, length, tokenizer.pad_token_id))
  feats = _run_batched(_jitted(text_encoder, config, mesh), text_params(config, params),
                       batches, len(batches), batch_size, mesh, "texts")
  out = np.empty_like(feats)
  out[order] = feats
  return out


def embed_images(config, params, pixel_batches, batch_size, num_batches, mesh=None):
  """Iterable of [n <= batch_size, H, W, C] pixel arrays -> [N, P] float32 unit features."""
  mesh = mesh or sharding.make_mesh()
  sharding.check_batch_size(batch_size, mesh)
  return _run_batched(_jitted(image_encoder, config, mesh), params, pixel_batches, num_batches,
                      batch_size, mesh, "images")


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


class Embedder:
  """Embeds texts (with the root) and images with one model's parameters.

  The root is `params["root"]` where the model has its own (see `load_model`), else the
  embedding of the empty string.

  `mesh`: the devices to split batches over; default this process's devices. Inside a
  multi-process run pass the global mesh: every process then calls the same methods.
  `image_features`: a {path: [P] features} dict to read and fill, shared with Embedders of
  the same image tower and preprocessing (see `image_tower_fingerprint`).
  """

  def __init__(self, config, params, model_dir, text_batch_size=256, image_batch_size=64,
               length_multiple=8, mesh=None, image_features=None):
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
    self.length_multiple = length_multiple
    self.preprocessing = family.preprocessing(model_dir, config)
    self.checkpoint_step = None  # set by from_path for a train workdir
    self._image_features = {} if image_features is None else image_features  # path -> [P]

  @classmethod
  def from_path(cls, model_path, text_batch_size=256, image_batch_size=64, length_multiple=8):
    """An Embedder of a Hugging Face directory or hub id, or of a train workdir's newest
    verified checkpoint (its step in `checkpoint_step`)."""
    config, params, model_dir, step = load_model(model_path)
    embedder = cls(config, params, model_dir, text_batch_size, image_batch_size, length_multiple)
    embedder.checkpoint_step = step
    return embedder

  def texts(self, texts):
    """-> ([N, P] unit text features, [P] root: the model's own or the empty string's)."""
    texts = list(texts) + ([""] if self.root is None else [])
    feats = (embed_texts(self.config, self.params, self.tokenizer, texts,
                                   self.text_batch_size, self.mesh, self.length_multiple)
             if texts else np.zeros((0, self.config.projection_dim), np.float32))
    errors.require_finite(feats, f"{self.model_dir}: the text features (root included) of "
                          f"{len(texts)} texts")
    return (feats[:-1], feats[-1]) if self.root is None else (feats, self.root)

  def images(self, images):
    """Image paths or PIL images -> [N, P] unit features.

    Features of paths are kept for the Embedder's life (P floats per image: 50,000 images
    at P=768 take 150 MB), so evaluations that share images (HierarCaps and the COCO 1K
    subset, the four BREEDS sets) embed each image once.
    """
    if not all(isinstance(p, str) for p in images):
      return self._embed_images(images)
    new = [p for p in dict.fromkeys(images) if p not in self._image_features]
    missing = [p for p in new if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[:3]}")
    if new:
      self._image_features.update(zip(new, self._embed_images(new)))
    return np.stack([self._image_features[p] for p in images])

  def _embed_images(self, images):
    batches = image_data.load_batches(images, self.preprocessing, self.image_batch_size)
    feats = embed_images(self.config, self.params, batches, self.image_batch_size,
                                   -(-len(images) // self.image_batch_size), self.mesh)
    return errors.require_finite(feats, f"{self.model_dir}: the image features of "
                                 f"{len(images)} images")
