"""A toy model family, the runnable example of docs/guide/9_extending.md: the whole of what a
family gives the library, in one file outside the package.

"toy": a bag-of-words text tower (the mean over the text's tokens of tanh(token embedding +
position embedding), projected: word order matters) and a linear patch image tower (each
patch embedded, GELU, the mean over patches, projected),
features on the sphere, stored in a format of its own: a folder with `toy_config.json` (the
sizes and the word vocabulary) and `toy_weights.npz`. No Hugging Face export, no stacked
layers, no per-token features: the library and the test matrix (`family_matrix.py`) skip
what needs those.

Registered by its import (`models.register`); the tests import it through
HIERRE_JAX_PLUGINS (conftest), so that the entry points they run as subprocesses know it
too.
"""
import dataclasses
import json
import os
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import root_file
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import preprocessing
from hierre_jax.models.siglip import random_init as siglip_random_init

CONFIG_FILE = "toy_config.json"
WEIGHTS_FILE = "toy_weights.npz"
SPECIALS = ("<pad>", "<bos>", "<eos>")  # ids 0 to 2
PAD, BOS, EOS = range(3)
VOCABULARY_WORDS = 8000  # the random checkpoints' vocabulary: the commonest English words
HASH_BUCKETS = 1024  # ids of the words outside the vocabulary (so that two rarely collide)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  vocabulary: tuple  # the words, SPECIALS first (then HASH_BUCKETS ids for any other word)
  width: int  # token and patch embedding width
  projection_dim: int
  image_size: int
  patch_size: int
  max_length: int  # tokens per text, <bos> and <eos> included

  def shapes(self):
    """-> {parameter: shape}: every array a checkpoint of this config holds."""
    return {"token_embedding": (len(self.vocabulary) + HASH_BUCKETS, self.width),
            "position_embedding": (self.max_length, self.width),
            "text_projection": (self.width, self.projection_dim),
            "patch_embedding": (self.patch_size ** 2 * 3, self.width),
            "visual_projection": (self.width, self.projection_dim),
            "logit_scale": ()}


class ToyTokenizer:
  """Lower-cased words and single punctuation marks -> vocabulary ids (any other word: one
  of HASH_BUCKETS ids after them, by its CRC-32), framed by <bos> and <eos> (the pooled token
  is the last). The calls the library makes (`family.Family.load_tokenizer`)."""

  pad_token_id = PAD

  def __init__(self, vocabulary):
    self.ids = {word: i for i, word in enumerate(vocabulary)}

  def word_id(self, word):
    return self.ids.get(word, len(self.ids) + zlib.crc32(word.encode()) % HASH_BUCKETS)

  def encode(self, text, add_special_tokens=True, max_length=None):
    ids = [self.word_id(w) for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())]
    if add_special_tokens:
      ids = [BOS] + ids[:None if max_length is None else max_length - 2] + [EOS]
    return ids if max_length is None else ids[:max_length]

  def __call__(self, texts, truncation=False, max_length=None, padding=False,
               add_special_tokens=True):
    batch = [texts] if isinstance(texts, str) else list(texts)
    ids = [self.encode(t, add_special_tokens, max_length if truncation else None)
           for t in batch]
    mask = [[1] * len(i) for i in ids]
    if padding == "max_length":
      mask = [m + [0] * (max_length - len(m)) for m in mask]
      ids = [i + [PAD] * (max_length - len(i)) for i in ids]
    out = {"input_ids": ids, "attention_mask": mask}
    return {k: v[0] for k, v in out.items()} if isinstance(texts, str) else out


def token_states(params, ids, positions):
  """[..., T] ids and their positions within their texts -> [..., T, D]."""
  return jnp.tanh(params["token_embedding"][ids] + params["position_embedding"][positions])


def text_features(params, ids):
  """[N, T] ids (PAD after each text) -> [N, P]: the mean of each text's token states,
  projected."""
  mask = (ids != PAD).astype(jnp.float32)[..., None]
  states = token_states(params, ids, jnp.arange(ids.shape[-1]))
  bag = (states * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)
  return bag @ params["text_projection"]


def packed_text_features(params, packed):
  """`packing.Packed` of S shards, N texts each -> [S, N, P]: each text's mean over the
  tokens of its own row and segment (`ends` names the row and, through its token, the
  segment)."""
  s, r, t = packed.ids.shape
  embeddings = token_states(params, packed.ids, packed.positions).reshape(s, r * t, -1)
  segments = packed.segments.reshape(s, r * t)
  rows = jnp.arange(r * t) // t  # [R * T] the row of every token
  own = ((rows[None, None] == (packed.ends // t)[..., None])
         & (segments[:, None] == jnp.take_along_axis(segments, packed.ends, 1)[..., None])
         & (segments[:, None] > 0)).astype(jnp.float32)  # [S, N, R * T]
  bag = jnp.einsum("snk,skd->snd", own, embeddings) / own.sum(-1, keepdims=True)
  return bag @ params["text_projection"]


def image_features(params, pixels, patch_size):
  """[N, H, W, 3] pixels -> [N, P]: each patch embedded, GELU, averaged, projected."""
  n, h, w, c = pixels.shape
  p = patch_size
  patches = pixels.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  patches = patches.reshape(n, (h // p) * (w // p), p * p * c)
  hidden = jax.nn.gelu(patches @ params["patch_embedding"]).mean(1)
  return hidden @ params["visual_projection"]


def draw_params(config, seed):
  """Random parameters of `config` (numpy float32), scaled so that features carry signal."""
  rng = np.random.default_rng(seed)
  shapes = config.shapes()
  out = {k: (rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)
         for k, shape in shapes.items() if shape}
  out["logit_scale"] = np.asarray(np.log(1 / 0.07), np.float32)
  return out


class Toy(family.Defaults):
  """`family.Family` of toy checkpoints (a folder with CONFIG_FILE and WEIGHTS_FILE)."""

  name = "toy"
  architectures = ()
  max_length = 32
  text_groups = ("token_embedding", "position_embedding", "text_projection")
  text_params = text_groups + ("logit_scale",)
  image_groups = ("patch_embedding", "visual_projection")
  random_options = ()
  buffers = ()
  # capabilities: none (Defaults'): no Hugging Face export, one layer layout, pooled only

  def owns(self, path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))

  def read_config(self, model_dir, scan_layers=True):
    del scan_layers  # one layout
    path = os.path.join(model_dir, CONFIG_FILE)
    errors.require_file(path, "toy model config")
    try:
      with open(path, encoding="utf-8") as f:
        values = json.load(f)
      values["vocabulary"] = tuple(values["vocabulary"])
      return ToyConfig(**values)
    except (ValueError, TypeError, KeyError) as e:
      raise state_dicts.CheckpointFormatError(f"{path}: not a toy model config ({e})") from None

  def read_checkpoint(self, model_dir, scan_layers=True):
    config = self.read_config(model_dir, scan_layers)
    path = os.path.join(model_dir, WEIGHTS_FILE)
    errors.require_file(path, "toy weights")
    with np.load(path, allow_pickle=False) as stored:
      params = {k: stored[k] for k in stored.files}
    for key, shape in config.shapes().items():
      if key not in params or params[key].shape != shape:
        found = params[key].shape if key in params else "missing"
        raise state_dicts.CheckpointFormatError(
            f"{path}: {key} should have shape {shape} ({CONFIG_FILE}'s sizes); found {found}")
    unexpected = sorted(set(params) - set(config.shapes()))
    if unexpected:
      raise state_dicts.CheckpointFormatError(f"{path}: unexpected arrays {unexpected}")
    params = {k: v.astype(np.float32) for k, v in params.items()}
    state_dicts.check_finite_params(params, path)
    return config, params

  def write_checkpoint(self, params, config, out_dir, source_dir):
    self.save_info(source_dir, config, out_dir)
    weights = {k: np.asarray(params[k], np.float32) for k in config.shapes()}
    np.savez(os.path.join(out_dir, WEIGHTS_FILE), **weights)
    root_file.write_root(out_dir, params.get("root"))
    return out_dir

  def save_info(self, source_dir, config, info_dir):
    del source_dir  # the config holds the vocabulary: nothing else to copy
    os.makedirs(info_dir, exist_ok=True)
    with open(os.path.join(info_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(dataclasses.asdict(config), f)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0):
    words = siglip_random_init.english_words()[:VOCABULARY_WORDS]
    config = ToyConfig(SPECIALS + tuple(words), text["hidden_size"], projection_dim,
                       vision["image_size"], vision["patch_size"],
                       text.get("max_position_embeddings", self.max_length))
    return self.write_checkpoint(draw_params(config, seed), config, out_dir, out_dir)

  def random_params(self, config, seed=0):
    return draw_params(config, seed)

  def load_tokenizer(self, model_dir):
    return ToyTokenizer(self.read_config(model_dir).vocabulary)

  def preprocessing(self, model_dir, config, use="classification"):
    del model_dir, use  # one rule for every use: the whole image squashed to the input size
    return preprocessing.Preprocessing(config.image_size, config.image_size, (0.5,) * 3,
                                       (0.5,) * 3, squash=True)

  def text_length(self, config):
    return config.max_length

  def pool_index(self, config, ids):
    return (ids != PAD).sum(-1) - 1  # <eos>, the last token

  def geometry(self, params, config):
    return sphere.SPHERE

  def encoders(self, config, remat=False):
    del remat  # nothing worth recomputing
    return family.Encoders(
        text=text_features, packed_text=packed_text_features,
        image=lambda params, pixels: image_features(params, pixels, config.patch_size))

  def embedding_size(self, config):
    return config.projection_dim

  def log_logit_scale(self, params):
    return params["logit_scale"]


FAMILY = models.register(Toy())
