"""ALIGN (`kakaobrain/align-base`: EfficientNet-B7 image tower, BERT-base text tower) in
Hugging Face's `AlignModel` format."""
import jax.numpy as jnp
import numpy as np

from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import hf_io
from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
from hierre_jax.models.align import preprocessing
from hierre_jax.models.align import random_init
from hierre_jax.models.align import tokenizer


class Align(family.Defaults):
  """`family.Family` of Hugging Face `AlignModel` directories; features on the sphere. The
  parameter tree's `batch_stats` entry (the image tower's BatchNorm statistics) is handed to
  Flax as its own collection."""

  name = "align"
  capabilities = frozenset({family.HF_EXPORT, family.STACKED_LAYERS})
  architectures = ("AlignModel", "ALIGNModel")
  max_length = tokenizer.MAX_LENGTH
  text_groups = ("text_model", "text_projection")
  text_params = ("text_model", "text_projection", "temperature")  # setup declares temperature
  random_options = ()
  buffers = ()
  image_groups = ("vision_model", "batch_stats")

  def owns(self, path):
    return hf_io.declares(path, self.architectures, self.name)

  def read_checkpoint(self, model_dir, scan_layers=True):
    config, params, _ = convert.load_align(model_dir, scan_layers)
    return config, params

  def read_config(self, model_dir, scan_layers):
    return modeling.AlignConfig.from_hf(convert.load_hf_config(model_dir), scan_layers)

  def write_checkpoint(self, params, config, out_dir, source_dir):
    return convert.export_align(params, convert.load_hf_config(source_dir), out_dir, source_dir)

  def save_info(self, source_dir, config, info_dir):
    hf_io.save_info(convert.load_hf_config(source_dir), source_dir, info_dir,
                    convert.MODEL_FILES)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0):
    return random_init.write_random_align(out_dir, text, vision, projection_dim, seed)

  def contrastive_refusal(self, model_dir):
    return ("contrastive training of both towers is built for CLIP-like towers; ALIGN's "
            "EfficientNet would need its BatchNorm statistics trained")

  def random_params(self, config, seed=0):
    return family.numpy_tree(random_init.draw(modeling.variable_shapes(config), config, seed))

  def load_tokenizer(self, model_dir):
    return tokenizer.load_tokenizer(model_dir)

  def preprocessing(self, model_dir, config, use="classification"):
    return preprocessing.Preprocessing.from_model_dir(model_dir)

  def pool_index(self, config, ids):
    return np.zeros(ids.shape[:-1], np.int32)  # [CLS]

  def geometry(self, params, config):
    return sphere.SPHERE

  def encoders(self, config, remat=False):
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

  def embedding_size(self, config):
    return config.projection_dim

  def has_stacked_layers(self, params):
    return convert.has_stacked_layers(params)

  def log_logit_scale(self, params):
    return -jnp.log(params["temperature"])  # logits = cos / T


FAMILY = Align()
