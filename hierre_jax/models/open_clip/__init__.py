"""open_clip-native checkpoints (mlfoundations/open_clip; FAMILIES_SPEC section 3): a
directory (or hub repo) with `open_clip_config.json` and `open_clip_model.safetensors` /
`open_clip_pytorch_model.bin`, or an `epoch_N.pt` training checkpoint with the config beside
it. open_clip's standard CLIP class is OpenAI's CLIP, so the towers are `models/clip`'s;
this package reads and writes open_clip's files and the sizes of its config."""
import json
import os

from absl import logging
import jax

from hierre_jax.common import errors
from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import root_file
from hierre_jax.models import state_dicts
from hierre_jax.models.clip import FAMILY as CLIP
from hierre_jax.models.clip import cleaned_tokenizer
from hierre_jax.models.clip import convert as clip_convert
from hierre_jax.models.clip import modeling as clip_modeling
from hierre_jax.models.clip import preprocessing as clip_preprocessing
from hierre_jax.models.clip import tokenizer as clip_tokenizer
from hierre_jax.models.open_clip import checkpoint
from hierre_jax.models.open_clip import config as oc_config


class OpenClip(family.Defaults):
  """`family.Family` of open_clip checkpoints of the standard CLIP class; features on the
  sphere. Exports back to open_clip's layout (`write_checkpoint`) or to a Hugging Face
  `CLIPModel` directory (`write_hf_checkpoint`)."""

  name = "open_clip"
  architectures = ()
  max_length = clip_tokenizer.MAX_LENGTH
  text_groups = CLIP.text_groups
  text_params = CLIP.text_params
  image_groups = CLIP.image_groups
  random_options = ()
  buffers = ()
  capabilities = CLIP.capabilities  # HF_EXPORT: written as a CLIPModel directory

  def owns(self, path):
    """A directory with open_clip_config.json (no HF config.json), or a weights file
    (.safetensors, .bin, .pt) of one."""
    if os.path.isfile(path):
      return path.endswith((".pt", ".bin", ".safetensors")) and os.path.exists(
          os.path.join(checkpoint.model_dir_of(path), oc_config.CONFIG_FILE))
    return (os.path.isdir(path) and os.path.exists(os.path.join(path, oc_config.CONFIG_FILE))
            and not os.path.exists(os.path.join(path, "config.json")))

  def read_checkpoint(self, model_dir, scan_layers=True):
    config = self.read_config(model_dir, scan_layers)
    path = checkpoint.weights_file(model_dir)
    params = clip_convert.state_dict_to_params(
        checkpoint.to_hf(checkpoint.read_state(path), path), config, source=path)
    state_dicts.check_finite_params(params, path)
    return config, params

  def read_config(self, model_dir, scan_layers):
    model_cfg, _ = oc_config.read(checkpoint.model_dir_of(model_dir))
    return clip_modeling.ClipConfig.from_hf(oc_config.hf_config(model_cfg), scan_layers)

  def write_checkpoint(self, params, config, out_dir, source_dir):
    """out_dir/open_clip_config.json (the hub layout) + open_clip_model.safetensors, and the
    RE root file of a params["root"]."""
    params = dict(params)
    root = params.pop("root", None)
    self.save_info(source_dir, config, out_dir)
    checkpoint.write(checkpoint.from_hf(clip_convert.params_to_state_dict(params)), out_dir)
    root_file.write_root(out_dir, root)
    return out_dir

  def write_hf_checkpoint(self, params, config, out_dir, source_dir):
    """The same weights as a Hugging Face `CLIPModel` directory (config, safetensors, the
    OpenAI tokenizer files, preprocessor_config.json of the open_clip preprocessing), and
    the record that its texts are cleaned as open_clip cleans them (hierre_jax reads it;
    transformers' CLIPTokenizer does not clean: said in a warning)."""
    model_cfg, _ = oc_config.read(checkpoint.model_dir_of(source_dir))
    out = clip_convert.export_clip(params, oc_config.hf_config(model_cfg), out_dir)
    clip_tokenizer.write_clip_vocab(out)
    cleaned_tokenizer.write_cleaning_record(out, literal_special_tokens=True)
    if self.preprocessing(source_dir, config).squash:
      logging.warning(
          "%s: the source squashes images to a square (preprocess_cfg.resize_mode='squash'); a "
          "Hugging Face CLIPImageProcessor resizes the short side and crops, so images are "
          "seen otherwise there", out)
    logging.warning(
        "%s: transformers' CLIPTokenizer does not clean text as open_clip does (ftfy, HTML "
        "entities unescaped, whitespace collapsed): clean texts such as 'a &amp; b' before "
        "tokenising with transformers; hierre_jax reads %s there and cleans them", out,
        cleaned_tokenizer.CLEANING_FILE)
    self.preprocessing(source_dir, config).write_hf_config(out)
    return out

  def save_info(self, source_dir, config, info_dir):
    model_cfg, preprocess_cfg = oc_config.read(checkpoint.model_dir_of(source_dir))
    os.makedirs(info_dir, exist_ok=True)
    with open(os.path.join(info_dir, oc_config.CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, f, indent=2)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0):
    """A random checkpoint in open_clip's layout of these (Hugging Face-named) sizes."""
    model_cfg = oc_config.from_hf_sizes(text, vision, projection_dim)
    config = clip_modeling.ClipConfig.from_hf(oc_config.hf_config(model_cfg))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, oc_config.CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump({"model_cfg": model_cfg, "preprocess_cfg": {}}, f, indent=2)
    params = clip_modeling.init_params(config, jax.random.key(seed))
    checkpoint.write(checkpoint.from_hf(clip_convert.params_to_state_dict(params)), out_dir)
    return out_dir

  def contrastive_refusal(self, model_dir):
    """open_clip trains with patch dropout where its config sets it; our trainer does not."""
    model_cfg, _ = oc_config.read(checkpoint.model_dir_of(model_dir))
    share = (model_cfg.get("vision_cfg") or {}).get("patch_dropout") or 0.0
    if share:
      return (f"{oc_config.CONFIG_FILE}: vision_cfg.patch_dropout={share}: open_clip drops "
              "that share of the image patches in training, which the contrastive trainer "
              "does not do")
    return ""

  def random_params(self, config, seed=0):
    return CLIP.random_params(config, seed)

  def load_tokenizer(self, model_dir):
    return cleaned_tokenizer.bpe_tokenizer(literal_special_tokens=True)  # open_clip's reading

  def preprocessing(self, model_dir, config, use="classification"):
    """open_clip's preprocess_cfg: mean/std, the short side resized and the centre cropped
    (resize_mode "shortest", the default) or squashed ("squash"), bicubic."""
    folder = checkpoint.model_dir_of(model_dir)
    _, p = oc_config.read(folder)
    where = os.path.join(folder, oc_config.CONFIG_FILE)
    if p.get("interpolation", "bicubic") != "bicubic":
      raise errors.UserError(f"{where}: preprocess_cfg.interpolation="
                             f"{p['interpolation']!r}: only 'bicubic' is implemented")
    mode = p.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
      raise errors.UserError(f"{where}: preprocess_cfg.resize_mode={mode!r}: 'shortest' or "
                             "'squash' are implemented")
    size = config.vision.image_size
    return clip_preprocessing.Preprocessing(
        size, size, tuple(p.get("mean", clip_preprocessing.OPENAI_CLIP_MEAN)),
        tuple(p.get("std", clip_preprocessing.OPENAI_CLIP_STD)), squash=mode == "squash",
        round_crop=True)  # torchvision's CenterCrop

  def pool_index(self, config, ids):
    return ids.argmax(axis=-1)  # the end of text, the largest id (open_clip's pool_type argmax)

  def geometry(self, params, config):
    return sphere.SPHERE

  def encoders(self, config, remat=False):
    return CLIP.encoders(config, remat)

  def embedding_size(self, config):
    return config.projection_dim

  def has_stacked_layers(self, params):
    return CLIP.has_stacked_layers(params)

  def log_logit_scale(self, params):
    return params["logit_scale"]


FAMILY = OpenClip()
