"""CLIP (OpenAI and OpenCLIP checkpoints in Hugging Face's `CLIPModel` format)."""
import jax

from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import hf_io
from hierre_jax.models.clip import cleaned_tokenizer
from hierre_jax.models.clip import convert
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import preprocessing
from hierre_jax.models.clip import random_init
from hierre_jax.models.clip import tokenizer


class Clip(family.Defaults):
  """`family.Family` of Hugging Face `CLIPModel` directories; features on the sphere."""

  name = "clip"
  capabilities = frozenset({family.HF_EXPORT, family.STACKED_LAYERS, family.TOKEN_FEATURES})
  architectures = ("CLIPModel",)
  max_length = tokenizer.MAX_LENGTH
  text_groups = ("text_model", "text_projection")
  text_params = ("text_model", "text_projection", "logit_scale")  # setup declares logit_scale
  random_options = ()
  buffers = ()
  image_groups = ("vision_model", "visual_projection")

  def owns(self, path):
    return hf_io.declares(path, self.architectures, self.name)

  def read_checkpoint(self, model_dir, scan_layers=True):
    config, params, _ = convert.load_clip(model_dir, scan_layers)
    return config, params

  def read_config(self, model_dir, scan_layers):
    return modeling.ClipConfig.from_hf(convert.load_hf_config(model_dir), scan_layers)

  def write_checkpoint(self, params, config, out_dir, source_dir):
    return convert.export_clip(params, convert.load_hf_config(source_dir), out_dir, source_dir)

  def save_info(self, source_dir, config, info_dir):
    hf_io.save_info(convert.load_hf_config(source_dir), source_dir, info_dir,
                    convert.TOKENIZER_FILES)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0):
    return random_init.write_random_clip(out_dir, text, vision, projection_dim, seed)

  def random_params(self, config, seed=0):
    return family.numpy_tree(modeling.init_params(config, jax.random.key(seed)))

  def load_tokenizer(self, model_dir):
    """transformers' CLIPTokenizer; one that cleans texts first where the directory says so
    (`cleaned_tokenizer.CLEANING_FILE`, written by the Hugging Face export of open_clip)."""
    found = tokenizer.load_tokenizer(model_dir)
    record = cleaned_tokenizer.cleaning_record(model_dir)
    if record is not None:
      return cleaned_tokenizer.CleanedTokenizer.from_pretrained(
          model_dir, split_special_tokens=bool(record.get("literal_special_tokens")))
    return found

  def preprocessing(self, model_dir, config, use="classification"):
    return preprocessing.Preprocessing.from_model_dir(model_dir, config.vision.image_size)

  def pool_index(self, config, ids):
    return modeling.end_of_text_position(ids, config.text.eos_token_id)

  def geometry(self, params, config):
    return sphere.SPHERE

  def encoders(self, config, remat=False):
    m = modeling.CLIP
    return family.linen_encoders(modeling.CLIP(config, remat), text=m.encode_text,
                                 packed_text=m.encode_packed_text, image=m.encode_image,
                                 text_tokens=m.encode_text_tokens,
                                 image_tokens=m.encode_image_tokens)

  def embedding_size(self, config):
    return config.projection_dim

  def has_stacked_layers(self, params):
    return convert.has_stacked_layers(params)

  def log_logit_scale(self, params):
    return params["logit_scale"]


FAMILY = Clip()
