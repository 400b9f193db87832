"""ALIGN (`kakaobrain/align-base`: EfficientNet-B7 image tower, BERT-base text tower) in
Hugging Face's `AlignModel` format."""
import jax.numpy as jnp
import numpy as np

from hierre_jax.models import family
from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
from hierre_jax.models.align import preprocessing
from hierre_jax.models.align import random_init
from hierre_jax.models.align import tokenizer


def encoders(config, remat=False):
  """The parameter tree's `batch_stats` entry is handed to Flax as its own collection."""
  model = modeling.ALIGN(config, remat)
  def apply(method):
    def fn(params, x):
      params = dict(params)
      stats = params.pop("batch_stats", {})
      return model.apply({"params": params, "batch_stats": stats}, x, method=method)
    return fn
  return family.Encoders(text=apply(modeling.ALIGN.encode_text),
                         packed_text=apply(modeling.ALIGN.encode_packed_text),
                         image=apply(modeling.ALIGN.encode_image))


FAMILY = family.Family(
    name="align", architectures=("AlignModel", "ALIGNModel"),
    text_groups=("text_model", "text_projection"),
    text_params=("text_model", "text_projection", "temperature"),  # setup declares temperature
    image_groups=("vision_model", "batch_stats"),
    model_files=convert.MODEL_FILES, max_length=tokenizer.MAX_LENGTH,
    load=convert.load_align, load_hf_config=convert.load_hf_config,
    read_config=lambda model_dir, scan_layers: modeling.AlignConfig.from_hf(
        convert.load_hf_config(model_dir), scan_layers),
    export=convert.export_align, write_random=random_init.write_random_align,
    load_tokenizer=tokenizer.load_tokenizer,
    preprocessing=lambda model_dir, config: preprocessing.Preprocessing.from_model_dir(model_dir),
    encoders=encoders, has_stacked_layers=convert.has_stacked_layers,
    pool_index=lambda config, ids: np.zeros(ids.shape[:-1], np.int32),  # [CLS]
    log_logit_scale=lambda params: -jnp.log(params["temperature"]))  # logits = cos / T
