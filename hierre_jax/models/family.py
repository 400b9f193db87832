"""The interface a model family implements: what the rest of the library may ask of a dual
encoder (load, export, a random checkpoint, its tokenizer and image preprocessing, and pure
encoders over its parameters). `Encoders` is the only place `model.apply` is called."""
import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Encoders:
  """Pure functions over a family's parameter tree; features are NOT normalised."""
  text: Callable         # (params, ids [N, T] int32) -> [N, P]
  packed_text: Callable  # (params, `packing.Packed` of S shards, N texts each) -> [S, N, P]
  image: Callable        # (params, pixels [N, H, W, C] float32) -> [N, P]
  # Every token's projected feature (DCSM); None where a family has no such features.
  text_tokens: Callable | None = None   # (params, ids [N, T], mask [N, T]) -> [N, T, P]
  image_tokens: Callable | None = None  # (params, pixels [N, H, W, C]) -> [N, 1 + HW, P]


@dataclasses.dataclass(frozen=True)
class Family:
  """One model family (CLIP, ...), read from a checkpoint's config.json (`architectures`)."""
  name: str
  architectures: tuple    # config.json `architectures` values of this family
  text_groups: tuple      # top-level parameter groups that text-tower training updates
  text_params: tuple      # top-level groups the text encoder reads
  image_groups: tuple     # top-level groups of the image tower (frozen in RE training)
  model_files: tuple      # tokenizer and preprocessing files a model directory carries
  max_length: int         # tokens per text
  load: Callable          # (path or hub id, scan_layers=True) -> (config, params, model_dir)
  load_hf_config: Callable    # model_dir -> transformers config
  read_config: Callable   # (model_dir, scan_layers) -> the family's modeling config
  export: Callable        # (params, hf_config, out_dir, source_dir=None) -> out_dir
  write_random: Callable  # (out_dir, text sizes, vision sizes, projection_dim, seed=0) -> out_dir
  load_tokenizer: Callable    # model_dir -> transformers tokenizer
  preprocessing: Callable     # (model_dir, config) -> image preprocessing (`.preprocess`)
  encoders: Callable      # (config, remat=False) -> Encoders
  has_stacked_layers: Callable  # params -> whether the encoder layers are scanned
  pool_index: Callable    # (config, ids [..., T] numpy or jax) -> [...] pooled token index
  log_logit_scale: Callable   # params -> scalar log of the contrastive logit scale
