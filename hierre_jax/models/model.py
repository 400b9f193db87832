"""One loaded dual encoder (`Model`): what every consumer of a checkpoint takes."""
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from hierre_jax.common import locations
from hierre_jax.models import family as family_lib

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


@dataclasses.dataclass(frozen=True)
class Model:
  """A family, its modeling config and parameters, and the directory of its config,
  tokenizer and preprocessing files (`model_dir`).

  params: numpy or jax tree; params["root"] is the model's own RE root where it has one (a
  fixed or trained root, SPEC section 6), else the root is the embedding of "".
  checkpoint_step: the step of a train workdir's checkpoint, None for a model directory.
  """
  family: family_lib.Family
  config: Any
  params: dict
  model_dir: str
  checkpoint_step: int | None = None

  @functools.cached_property
  def tokenizer(self):
    return self.family.load_tokenizer(self.model_dir)

  @functools.cached_property
  def preprocessing(self):
    return self.family.preprocessing(self.model_dir, self.config)

  def preprocessing_for(self, use):
    """The family's preprocessing for one of `family.IMAGE_USES`."""
    if use not in family_lib.IMAGE_USES:
      raise ValueError(f"image use {use!r}: one of {family_lib.IMAGE_USES}")
    if use == family_lib.IMAGE_USES[0]:
      return self.preprocessing
    return self.family.preprocessing(self.model_dir, self.config, use)

  @functools.cached_property
  def geometry(self):
    return self.family.geometry(self.params, self.config)

  @property
  def embedding_size(self):
    return self.family.embedding_size(self.config)

  @property
  def max_length(self):
    """Tokens per text (`Family.text_length`)."""
    return self.family.text_length(self.config)

  def with_params(self, params):
    """The same model with other parameters (a train state's); the tokenizer and
    preprocessing already loaded are kept."""
    out = dataclasses.replace(self, params=params)
    out.__dict__.update({k: v for k, v in self.__dict__.items()
                         if k in ("tokenizer", "preprocessing")})
    return out

  def text_params(self, params=None):
    """The parameter groups the text encoder reads, of `params` (default the model's; a
    group the checkpoint does not have, e.g. a CLIP baseline's alpha, is left out)."""
    params = self.params if params is None else params
    return {k: params[k] for k in self.family.text_params if k in params}

  def encoders(self, remat=False, dtype="float32"):
    """The family's `Encoders`, text and image computed in `dtype` (`in_compute_dtype`)."""
    e = self.family.encoders(self.config, remat)
    return dataclasses.replace(e, text=in_compute_dtype(e.text, dtype),
                               packed_text=in_compute_dtype(e.packed_text, dtype),
                               image=in_compute_dtype(e.image, dtype))

  def pool_index(self, ids):
    """ids [..., T] -> [...] index of the token each text is pooled at."""
    return self.family.pool_index(self.config, ids)

  def export(self, out_dir, params=None, hf=False):
    """Writes `params` (default the model's) in the family's checkpoint format -> out_dir;
    `hf`: as a Hugging Face model directory (open_clip's `write_hf_checkpoint`; the Hugging
    Face families' own format), ValueError for a family that has none (MERU). An out_dir
    that is, lies inside or holds the model's own files is refused (`locations.check_apart`):
    an export never overwrites, nor lands beside, the checkpoint it was read from."""
    locations.check_apart([("out_dir", out_dir)], [("model_dir", self.model_dir)])
    write = self.family.write_hf_checkpoint if hf else self.family.write_checkpoint
    return write(self.params if params is None else params, self.config, out_dir,
                 self.model_dir)
