"""The interface a model family implements (`Family`): everything the rest of the library
asks of a dual encoder. A family is one object; `models.load` hands it, with a checkpoint's
config and parameters, to every consumer as a `model.Model`. `Encoders` is the only place
`model.apply` is called.

To add a family: an object implementing `Family` (subclassing `Defaults` for what it may
leave out), registered with `models.register` (docs/guide/9_extending.md; the runnable
example is tests/toy_family.py). What a family can do beyond the required methods it
declares in `capabilities` (`CAPABILITIES`); the library decides by those, never by a
family's name.
"""
import dataclasses
from typing import Any, Callable, Protocol

import jax
import numpy as np

from hierre_jax.geometry import Geometry


@dataclasses.dataclass(frozen=True)
class Encoders:
  """Pure functions over a family's parameter tree; features are NOT lifted into the
  geometry (not normalised)."""
  text: Callable         # (params, ids [N, T] int32) -> [N, P]
  packed_text: Callable  # (params, `packing.Packed` of S shards, N texts each) -> [S, N, P]
  image: Callable        # (params, pixels [N, H, W, C] float32) -> [N, P]
  # Every token's projected feature (DCSM); None where a family has no such features.
  text_tokens: Callable | None = None   # (params, ids [N, T], mask [N, T]) -> [N, T, P]
  image_tokens: Callable | None = None  # (params, pixels [N, H, W, C]) -> [N, 1 + HW, P]


def linen_encoders(model, **methods):
  """`Encoders` of a linen module: each of `methods` (name -> unbound method of the module's
  class, e.g. text=CLIP.encode_text) applied with a params tree."""
  apply = lambda method: lambda params, *x: model.apply({"params": params}, *x, method=method)
  return Encoders(**{name: apply(method) for name, method in methods.items()})


# The optional capabilities a family declares (`Family.capabilities`):
HF_EXPORT = "hf_export"  # `write_hf_checkpoint` writes a transformers model directory
STACKED_LAYERS = "stacked_layers"  # read_checkpoint(scan_layers=True) stacks each tower's
#                                    layers for jax.lax.scan (`has_stacked_layers` tells)
TOKEN_FEATURES = "token_features"  # `Encoders.text_tokens` / `image_tokens` (DCSM, FILIP's
#                                    token term, the grounding loss)
CAPABILITIES = (HF_EXPORT, STACKED_LAYERS, TOKEN_FEATURES)


class Defaults:
  """What a family may leave out of `Family`: no capabilities; a Hugging Face export that
  is its own format (`write_hf_checkpoint` is `write_checkpoint` where HF_EXPORT is
  declared, refused otherwise); no refusal of contrastive training; one layer layout; the
  family's `max_length` cut to the checkpoint's position table (`config.text.max_positions`:
  a family whose config has none overrides `text_length`). A family subclasses it and
  overrides what differs."""

  capabilities = frozenset()

  def write_hf_checkpoint(self, params, config, out_dir, source_dir):
    if HF_EXPORT not in self.capabilities:
      raise ValueError(f"{source_dir}: a {self.name} model has no Hugging Face format to "
                       "export to")
    return self.write_checkpoint(params, config, out_dir, source_dir)

  def contrastive_refusal(self, model_dir):
    del model_dir
    return ""

  def has_stacked_layers(self, params):
    del params
    return False

  def text_length(self, config):
    return min(self.max_length, config.text.max_positions)


def numpy_tree(params):
  """A parameter tree of jax arrays -> the same tree of numpy arrays (a loaded model's)."""
  return jax.tree.map(np.asarray, params)


# What images are embedded for: zero-shot classification, traversal and everything else,
# or image-text retrieval.
IMAGE_USES = ("classification", "retrieval")


class ImagePreprocessing(Protocol):
  """A family's image preprocessing. Its `repr` names every setting: it is part of the key
  of an image feature store (`embedding.image_store_key`), so two preprocessings with the
  same repr must give the same pixels."""

  def preprocess(self, image) -> Any:
    """PIL image or path -> [H, W, C] float32 pixels."""


class Family(Protocol):
  """One model family (CLIP, ALIGN, ...): its checkpoint format, towers, tokenizer,
  preprocessing and geometry."""

  name: str                # config["family"] of a random checkpoint
  architectures: tuple     # config.json `architectures` values of this family
  max_length: int          # tokens per text
  text_groups: tuple       # top-level parameter groups that text-tower training updates
  text_params: tuple       # top-level groups the text encoder reads
  image_groups: tuple      # top-level groups of the image tower (frozen in RE training)
  random_options: tuple    # keyword options of `write_random` (config.random_init.options)
  buffers: tuple           # top-level entries that are stored, never trained (statistics)
  capabilities: frozenset  # of CAPABILITIES: what it can do beyond the methods below

  # The checkpoint format.
  def owns(self, path: str) -> bool:
    """Whether `path` (a file or folder) is a checkpoint of this family, or a train
    workdir's record of one (`save_info`)."""

  def read_checkpoint(self, model_dir: str, scan_layers: bool = True) -> tuple:
    """A local checkpoint -> (modeling config, numpy parameter tree); a one-line
    errors.UserError naming the file or key at fault."""

  def read_config(self, model_dir: str, scan_layers: bool) -> Any:
    """The modeling config alone (a train workdir's model_info/ holds no weights)."""

  def write_checkpoint(self, params: dict, config: Any, out_dir: str, source_dir: str) -> str:
    """Writes `params` of `config` (with a params["root"] of its own, if any) in the
    family's format, with the config, tokenizer and preprocessing files of `source_dir`
    -> out_dir."""

  def write_hf_checkpoint(self, params: dict, config: Any, out_dir: str,
                          source_dir: str) -> str:
    """The same weights as a Hugging Face model directory -> out_dir (`Model.export(out,
    hf=True)`; `write_checkpoint` for a family whose format is one, open_clip's converts);
    ValueError where HF_EXPORT is not declared."""

  def save_info(self, source_dir: str, config: Any, info_dir: str) -> None:
    """Writes what `read_config`, `load_tokenizer` and `preprocessing` read (no weights)."""

  def write_random(self, out_dir: str, text: dict, vision: dict, projection_dim: int,
                   seed: int = 0, **options) -> str:
    """A random checkpoint of these tower sizes (drawn so that features carry signal);
    `options` are the family's `random_options`."""

  def contrastive_refusal(self, model_dir: str) -> str:
    """Why the contrastive trainer (`hierre_jax.contrastive`) cannot train this checkpoint
    as its own training did, in one line naming the setting; "" when it can."""

  def random_params(self, config: Any, seed: int = 0) -> dict:
    """A parameter tree of `config` (layout included) as `write_random` draws one, numpy:
    the same-family random model that evaluate scores as a baseline row."""

  # Texts and images.
  def load_tokenizer(self, model_dir: str) -> Any:
    """The checkpoint's tokenizer. The calls the library makes (transformers' signature):
    `tok(texts: list[str], truncation=True, max_length=L)["input_ids"]` -> one list of ids
    per text, special tokens included, at most L ids, the pooled token among them (the
    text tower's `pool_index`); `tok(text, add_special_tokens=False)["input_ids"]` (DCSM's
    word columns); `tok(texts, padding="max_length", truncation=True, max_length=L)` with
    "attention_mask" too (DCSM's per-token features); and `pad_token_id`, the id texts are
    padded with (`data.text.pad`) and that packed rows fill their gaps with
    (`data.packing.Packed`)."""

  def text_length(self, config: Any) -> int:
    """Tokens per text of this checkpoint: `max_length`, or fewer where its position
    table is shorter (SigLIP so400m-patch14-224: 16)."""

  def preprocessing(self, model_dir: str, config: Any,
                    use: str = "classification") -> ImagePreprocessing:
    """The image preprocessing of the checkpoint for one of `IMAGE_USES` (most families use
    one for all; MERU's retrieval squashes where the others crop)."""

  def pool_index(self, config: Any, ids) -> Any:
    """ids [..., T] (numpy or jax) -> [...] index of the token a text is pooled at."""

  # The towers and their space.
  def geometry(self, params: dict, config: Any) -> Geometry:
    """The space a checkpoint's features live in (`geometry.sphere.SPHERE`; a hyperbolic
    family's depends on its stored curvature and its recorded sizes)."""

  def encoders(self, config: Any, remat: bool = False) -> Encoders:
    """The pure encoders of `config` (`remat`: recompute activations in the backward pass);
    `text_tokens` and `image_tokens` where TOKEN_FEATURES is declared. `packed_text` takes
    `data.packing.Packed` rows: each text attends only within its own segment, with its own
    positions, and is pooled at its `ends` token, so that its feature equals `text`'s of
    that text alone."""

  def embedding_size(self, config: Any) -> int:
    """P, the size of a text or image feature."""

  def has_stacked_layers(self, params: dict) -> bool:
    """Whether the encoder layers of `params` are stacked for `jax.lax.scan` (False for a
    family without STACKED_LAYERS)."""

  def log_logit_scale(self, params: dict) -> Any:
    """Scalar log of the contrastive logit scale (logits = exp(it) * similarity)."""
