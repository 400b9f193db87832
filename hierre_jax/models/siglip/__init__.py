"""SigLIP (and SigLIP 2 at fixed resolution) in Hugging Face's `SiglipModel` format
(FAMILIES_SPEC section 2): features on the sphere; the RE root is the embedding of ""
padded to the text length (`tokenizer`). `Siglip2Model` (NaFlex) is another architecture,
refused by name (`models.family_of`). No per-token features are exposed: the image tower has no class token and
no projection of its patches (the attention-pooling head makes the image feature), so DCSM,
which compares projected tokens, does not apply."""
import json
import os

import jax

from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import hf_io
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import convert as clip_convert
from hierre_jax.models.clip import preprocessing as clip_preprocessing
from hierre_jax.models.siglip import modeling
from hierre_jax.models.siglip import random_init
from hierre_jax.models.siglip import tokenizer

IGNORED_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
FILES = tokenizer.FILES + ("preprocessor_config.json",)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


def write_preprocessor_config(p, out_dir):
  """out_dir/preprocessor_config.json: transformers' SiglipImageProcessor with the settings
  of `p` (a squashing `Preprocessing`)."""
  config = {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
            "size": {"height": p.crop, "width": p.crop}, "resample": p.resample, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(p.mean),
            "image_std": list(p.std), "processor_class": "SiglipProcessor"}
  with open(os.path.join(out_dir, "preprocessor_config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)


class Siglip(family.Defaults):
  """`family.Family` of Hugging Face `SiglipModel` directories."""

  name = "siglip"
  capabilities = frozenset({family.HF_EXPORT, family.STACKED_LAYERS})
  architectures = ("SiglipModel",)
  max_length = 64  # the longest SigLIP text; the tokenizer pads to the checkpoint's own
  text_groups = ("text_model",)
  text_params = ("text_model", "logit_scale", "logit_bias")  # setup declares the scalars
  image_groups = ("vision_model",)
  random_options = ()
  buffers = ()

  def owns(self, path):
    return hf_io.declares(path, self.architectures, self.name)

  def read_checkpoint(self, model_dir, scan_layers=True):
    config = self.read_config(model_dir, scan_layers)
    params = clip_convert.state_dict_to_params(
        hf_io.read_state_dict(model_dir, IGNORED_KEYS), config, source=model_dir,
        param_shapes=modeling.param_shapes, model="a SiglipModel")
    state_dicts.check_finite_params(params, model_dir)
    return config, params

  def read_config(self, model_dir, scan_layers):
    return modeling.SiglipConfig.from_hf(self.hf_config(model_dir), scan_layers)

  def hf_config(self, model_dir):
    import transformers  # pylint: disable=g-import-not-at-top
    return hf_io.load_hf_config(model_dir, transformers.SiglipConfig)

  def write_checkpoint(self, params, config, out_dir, source_dir):
    """A SiglipModel directory (+ the tokenizer files of `source_dir`, a
    preprocessor_config.json, and the RE root file of a params["root"])."""
    params = dict(params)
    root = params.pop("root", None)
    hf_io.write_model_dir(clip_convert.params_to_state_dict(params), root,
                          self.hf_config(source_dir), self.architectures, out_dir, source_dir,
                          FILES)
    if not os.path.exists(os.path.join(out_dir, "preprocessor_config.json")):
      write_preprocessor_config(self.preprocessing(out_dir, config), out_dir)
    return out_dir

  def save_info(self, source_dir, config, info_dir):
    hf_io.save_info(self.hf_config(source_dir), source_dir, info_dir, FILES)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0):
    out = random_init.write_random_siglip(out_dir, text, vision, projection_dim, seed)
    write_preprocessor_config(self.preprocessing(out, self.read_config(out, True)), out)
    return out

  def random_params(self, config, seed=0):
    return family.numpy_tree(modeling.init_params(config, jax.random.key(seed)))

  def load_tokenizer(self, model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
      length = json.load(f).get("text_config", {}).get("max_position_embeddings", 64)
    return tokenizer.load_tokenizer(model_dir, length)

  def preprocessing(self, model_dir, config, use="classification"):
    """The whole image squashed to the model's size (bicubic), x / 255, mean = std = 0.5
    unless preprocessor_config.json says otherwise (its mean, std and resample filter:
    SigLIP 2 ships bilinear)."""
    path = os.path.join(model_dir, "preprocessor_config.json")
    found = {}
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        found = json.load(f)
    size = config.vision.image_size
    return clip_preprocessing.Preprocessing(
        size, size, tuple(found.get("image_mean", SIGLIP_MEAN)),
        tuple(found.get("image_std", SIGLIP_STD)), squash=True,
        resample=clip_preprocessing.resample_of(found, path))

  def pool_index(self, config, ids):
    return ids[..., 0] * 0 + (ids.shape[-1] - 1)  # the last position (numpy or jax ids)

  def geometry(self, params, config):
    return sphere.SPHERE

  def encoders(self, config, remat=False):
    m = modeling.Siglip
    return family.linen_encoders(modeling.Siglip(config, remat), text=m.encode_text,
                                 packed_text=m.encode_packed_text, image=m.encode_image)

  def embedding_size(self, config):
    return config.projection_dim

  def has_stacked_layers(self, params):
    return "layers" in params["text_model"]["encoder"]

  def log_logit_scale(self, params):
    return params["logit_scale"].reshape(())


FAMILY = Siglip()
