"""Dense cosine similarity maps (DCSM_SPEC sections 2-4): the cosines between every image
token and every caption token of a frozen model, functional rows written into the map's
columns, and z-scoring.

A map of one (image, caption) pair is [rows, COLUMNS]: rows are the image tokens (the class
token, then the patches in raster order; 197 for ViT-B/16 at 224 px), columns the caption's
tokens padded to COLUMNS with the pad token (pad columns kept). Row 0 at the end-of-text
column is the model's global cosine.
"""
import dataclasses
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import sharding
from hierre_jax.data import images as image_data
from hierre_jax.models import family as family_lib

COLUMNS = 30  # caption tokens per map (the release's max_length)
# The release's functional words, in the order it applies them.
FUNCTIONAL_WORDS = ("above", "below", "left", "right", "small", "big", "not", "no", "without",
                    "but", "absent")
# Which columns a functional word's row replaces (DCSM_SPEC section 3): "release" the column
# at the word's WORD index (the token before a one-token word: the release's quirk, kept for
# parity with released scorers); "token" the word's own token columns; "insert" a column
# inserted at the word index, the later ones shifted right and the last dropped.
COLUMN_RULES = ("release", "token", "insert")


# Whose generator draws the functional table: "torch" the first N(0, 1) draws of torch's
# generator seeded 15, as nn.Embedding(11, rows) draws them (the release's training script
# seeds with 15, loads CLIP, then draws that embedding; this equals the release's table only
# where loading CLIP draws nothing from torch's generator, as transformers 5.x's
# from_pretrained does. The release pins transformers 4.26, whose from_pretrained does draw
# while initialising, so its tables differ from this; a released checkpoint carries its own
# table, which import reads), "numpy" numpy's (for a machine without PyTorch).
TABLE_GENERATORS = ("torch", "numpy")


def default_table_generator():
  """"torch" where PyTorch is installed, else "numpy"."""
  return "torch" if importlib.util.find_spec("torch") else "numpy"


def check_table_generator(name, label="table_generator"):
  """-> `name` resolved ("" the default); UserError naming `label` if unknown or unusable."""
  name = name or default_table_generator()
  if name not in TABLE_GENERATORS:
    raise errors.UserError(f"{label}={name!r}: use one of {', '.join(TABLE_GENERATORS)}")
  if name == "torch" and not importlib.util.find_spec("torch"):
    raise errors.UserError(f"{label}='torch': PyTorch is not installed (pip install torch, or "
                           "draw with numpy's generator)")
  return name


def functional_table(rows, seed=15, generator=""):
  """-> [11, rows] float32: one fixed row per functional word, N(0, 1) draws of `generator`
  (TABLE_GENERATORS; "" the default) seeded `seed`, each row L2-normalised (in float64),
  then (row + 1) / 3. With torch's CPU generator these are the release's draws, so the
  table is the release's to float32 rounding (an imported release scorer brings its own)."""
  if check_table_generator(generator) == "torch":
    import torch
    draws = torch.randn(len(FUNCTIONAL_WORDS), rows,
                        generator=torch.Generator().manual_seed(seed)).double().numpy()
  else:
    draws = np.random.default_rng(seed).standard_normal((len(FUNCTIONAL_WORDS), rows))
  return ((draws / np.linalg.norm(draws, axis=1, keepdims=True) + 1) / 3).astype(np.float32)


def column_sources(caption, tokenizer, rule="release", functional_words=FUNCTIONAL_WORDS):
  """-> [COLUMNS] int32: for each column of `caption`'s map after the functional rows, the
  map column it takes (>= 0) or the functional word's table row w as -(w + 1).

  The caption is split on single spaces; each functional word present (case-sensitive,
  punctuation attached prevents a match) acts at its FIRST occurrence, in the order of
  `functional_words` (a release checkpoint's `learned_lookup` may give its own list). Columns
  past COLUMNS (a truncated caption) are left as they are.
  """
  if rule not in COLUMN_RULES:
    raise ValueError(f"column_rule={rule!r}: use one of {', '.join(COLUMN_RULES)}")
  words = caption.split(" ")
  sources = list(range(COLUMNS))
  for w, word in enumerate(functional_words):
    if word not in words:
      continue
    at = words.index(word)
    if rule == "release":
      columns = [at]
    elif rule == "token":
      count = lambda n: len(tokenizer(" ".join(words[:n]), add_special_tokens=False)["input_ids"])
      columns = range(1 + count(at), 1 + count(at + 1))  # after the start token
    else:
      sources = (sources[:at] + [-(w + 1)] + sources[at:])[:COLUMNS]
      continue
    for column in columns:
      if column < COLUMNS:
        sources[column] = -(w + 1)
  return np.asarray(sources, np.int32)


def similarity(image_tokens, text_tokens):
  """[I, R, P] and [C, T, P] unit features -> maps [I, C, R, T]."""
  return jnp.einsum("irp,ctp->icrt", image_tokens, text_tokens)


def with_functional_rows(maps, sources, table):
  """maps [..., R, T], `column_sources` broadcastable to [..., T] (one row per caption),
  table [11, R] -> maps with each caption's columns taken as its sources say."""
  sources = jnp.broadcast_to(sources, maps.shape[:-2] + sources.shape[-1:])
  taken = jnp.take_along_axis(maps, jnp.broadcast_to(jnp.maximum(sources, 0)[..., None, :],
                                                     maps.shape), axis=-1)
  rows = jnp.swapaxes(table[jnp.maximum(-sources - 1, 0)], -1, -2)  # [..., R, T]
  return jnp.where((sources < 0)[..., None, :], rows, taken)


def standardize(maps, per_map=False):
  """z-score with the unbiased std: over the whole block (the release), or with
  `per_map` over each map's last two axes. maps [..., R, T] -> same shape."""
  axes = (-2, -1) if per_map else None
  mean = maps.mean(axis=axes, keepdims=per_map)
  return (maps - mean) / maps.std(axis=axes, keepdims=per_map, ddof=1)


@dataclasses.dataclass(frozen=True)
class MapOptions:
  """How maps are made from token features (each a CHOICE of DCSM_SPEC, recorded with
  every result)."""
  column_rule: str = "release"
  functional_rows: bool = True
  standardize: bool = False     # z-score before scoring (the scorer's input always is)
  per_map: bool = False         # z-score each map instead of the whole block
  functional_words: tuple = FUNCTIONAL_WORDS  # the words of the table's rows, in order

  def check(self):
    if self.column_rule not in COLUMN_RULES:
      raise errors.UserError(f"column_rule={self.column_rule!r}: use one of "
                             f"{', '.join(COLUMN_RULES)}")


def make_maps(image_tokens, text_tokens, sources, table, options):
  """Unit token features [I, R, P], [C, T, P], `column_sources` [C, T], table [11, R] ->
  maps [I, C, R, T] as `options` says."""
  maps = similarity(image_tokens, text_tokens)
  if options.functional_rows:
    maps = with_functional_rows(maps, sources[None], table)
  return standardize(maps, options.per_map) if options.standardize else maps


class TokenFeatures:
  """Unit per-token features of a frozen model (a checkpoint directory, hub id or train
  workdir) whose family has them (`Encoders.text_tokens` / `image_tokens`). `rows`: the
  image tokens per image, as the family's tower gives them (CLIP: the class token, then
  the patches)."""

  def __init__(self, model, batch_size=32, image_workers=0, mesh=None):
    self.model = loading.load(model)
    if family_lib.TOKEN_FEATURES not in self.model.family.capabilities:
      raise errors.UserError(
          f"{model}: the {self.model.family.name} family has no per-token features (its "
          "towers give one pooled feature per text and image); dense maps need a family whose "
          "encoders give every token's projected feature (text_tokens, image_tokens)")
    encoders = self.model.encoders()
    params = dict(self.model.params)
    params.pop("root", None)
    self.batch_size, self.image_workers = batch_size, image_workers
    self.mesh = mesh or sharding.make_mesh(jax.local_devices())
    sharding.check_batch_size(batch_size, self.mesh)
    self.params = jax.device_put(params, sharding.replicated(self.mesh))
    self.tokenizer, self.preprocessing = self.model.tokenizer, self.model.preprocessing
    lift = self.model.geometry.lift
    out = sharding.replicated(self.mesh)
    # (params, pixels [N, H, W, C]) -> [N, rows, P] unit features, for use inside a jit
    self.image_tokens = lambda p, x: lift(encoders.image_tokens(p, x))
    self._images = jax.jit(self.image_tokens, out_shardings=out)
    self._texts = jax.jit(  # ids and mask stacked on the last axis: [N, T, 2]
        lambda p, x: lift(encoders.text_tokens(p, x[..., 0], x[..., 1])), out_shardings=out)
    pixels = self.preprocessing.preprocess(Image.new("RGB", (8, 8)))[None]
    self.rows = jax.eval_shape(self.image_tokens, params, pixels).shape[1]

  def tokenize(self, captions):
    """-> ([C, COLUMNS] ids padded with the pad token, [C, COLUMNS] attention mask)."""
    enc = self.tokenizer(list(captions), padding="max_length", truncation=True,
                         max_length=COLUMNS, return_tensors="np")
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)

  def texts(self, captions):
    """Captions -> [C, COLUMNS, P] unit features of every token, pad positions included."""
    if not captions:
      return np.zeros((0, COLUMNS, self.model.embedding_size), np.float32)
    ids = np.stack(self.tokenize(captions), axis=-1)
    batches = [ids[s:s + self.batch_size] for s in range(0, len(ids), self.batch_size)]
    return self._checked(embedding.run_batched(self._texts, self.params, batches, len(batches),
                                               self.batch_size, self.mesh, "caption tokens"))

  def images(self, images):
    """Paths or PIL images -> [N, rows, P] unit features of every image token."""
    if not images:
      return np.zeros((0, self.rows, self.model.embedding_size), np.float32)
    batches = image_data.load_batches(list(images), self.preprocessing, self.batch_size,
                                      self.image_workers or None)
    return self._checked(embedding.run_batched(self._images, self.params, batches,
                                               -(-len(images) // self.batch_size),
                                               self.batch_size, self.mesh, "image tokens"))

  def _checked(self, features):
    return errors.require_finite(features, f"{self.model.model_dir}: the token features of "
                                 f"{len(features)} inputs")


@functools.lru_cache(maxsize=4)
def _token_features(model):
  return TokenFeatures(model)


def dense_maps(model, images, captions, *, column_rule="release", functional_rows=True,
               standardize=False, per_map=False, table=None):
  """Dense cosine similarity maps of every image with every caption.

  model: a Hugging Face directory, hub id or train workdir of a CLIP model; images: file
  paths or PIL images; captions: strings. `column_rule`, `functional_rows`, `standardize`
  (over all maps returned) and `per_map` as `MapOptions`; `table`: the [11, rows]
  functional rows (default `functional_table(rows)`).
  -> numpy float32 [n_images, n_captions, rows, COLUMNS].
  """
  options = MapOptions(column_rule, functional_rows, standardize, per_map)
  options.check()
  features = _token_features(model) if isinstance(model, str) else model
  table = functional_table(features.rows) if table is None else np.asarray(table, np.float32)
  sources = np.stack([column_sources(c, features.tokenizer, column_rule) for c in captions]
                     ) if captions else np.zeros((0, COLUMNS), np.int32)
  return np.asarray(make_maps(features.images(images), features.texts(captions), sources,
                              table, options))
