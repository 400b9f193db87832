"""MERU (Desai et al., ICML 2023): the release's `.pth` checkpoints, hyperbolic
(`meru_vit_*`: features on the Lorentz hyperboloid) or its CLIP baselines (`clip_vit_*`:
the sphere). Written from ../shared/FAMILIES_SPEC.md section 1 and the maths."""
import json
import os

import jax
import numpy as np

from hierre_jax.common import errors
from hierre_jax.geometry import flat
from hierre_jax.geometry import lorentz
from hierre_jax.geometry import sphere
from hierre_jax.models import family
from hierre_jax.models import root_file
from hierre_jax.models.clip import preprocessing as clip_preprocessing
from hierre_jax.models.clip import cleaned_tokenizer
from hierre_jax.models.clip import tokenizer as clip_tokenizer
from hierre_jax.models.meru import checkpoint
from hierre_jax.models.meru import modeling
from hierre_jax.models.meru import random_init

CONFIG_FILE = checkpoint.SIZES_FILE  # the sizes: beside our .pth, in a workdir's model_info


def pth_name(source):
  """The file name of a .pth, or of a directory's one .pth; else random_init.FILE."""
  if os.path.isfile(source):
    return os.path.basename(source)
  found = [n for n in os.listdir(source) if n.endswith(".pth")] if os.path.isdir(source) else []
  return found[0] if len(found) == 1 else random_init.FILE


class Meru(family.Defaults):
  """`family.Family` of MERU release checkpoints: a .pth file or a directory holding one."""

  name = "meru"
  architectures = ()
  max_length = clip_tokenizer.MAX_LENGTH
  text_groups = ("textual", "textual_proj")
  text_params = ("textual", "textual_proj", "textual_alpha")
  buffers = ("pixel_mean", "pixel_std")  # stored statistics, never trained
  capabilities = frozenset({family.STACKED_LAYERS})  # (transformers has no MERU class)
  # hyperbolic=False: the release's CLIP baseline (the sphere); flat=True: a hyperbolic
  # checkpoint's tangent vectors read as points of flat R^P (the hyperbolic study's control)
  random_options = ("hyperbolic", "flat")
  image_groups = ("visual", "visual_proj", "visual_alpha", "pixel_mean", "pixel_std")

  def owns(self, path):
    """A .pth file, a directory whose checkpoint is one, or a workdir's model_info of one."""
    if os.path.isfile(path):
      return path.endswith(".pth")
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, CONFIG_FILE)) or (
        not os.path.exists(os.path.join(path, "config.json"))
        and any(n.endswith(".pth") for n in os.listdir(path))))

  def read_checkpoint(self, model_dir, scan_layers=True):
    return checkpoint.load(model_dir, scan_layers)

  def read_config(self, model_dir, scan_layers):
    path = os.path.join(model_dir, CONFIG_FILE)
    errors.require_file(path, "MERU sizes record")
    with open(path, encoding="utf-8") as f:
      return modeling.MeruConfig.of_sizes(**json.load(f), scan_layers=scan_layers)

  def write_checkpoint(self, params, config, out_dir, source_dir):
    """out_dir/<the source's .pth name> (meru.pth for a workdir's), and the RE root file
    of a params["root"] (`root_file.ROOT_FILE`)."""
    params = dict(params)
    root = params.pop("root", None)
    checkpoint.save(params, config, os.path.join(out_dir, pth_name(source_dir)))
    root_file.write_root(out_dir, root)
    return out_dir

  def save_info(self, source_dir, config, info_dir):
    os.makedirs(info_dir, exist_ok=True)
    with open(os.path.join(info_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(config.to_dict(), f, indent=1)

  def write_random(self, out_dir, text, vision, projection_dim, seed=0, hyperbolic=True,
                   flat=False):
    return random_init.write_random_meru(out_dir, text, vision, projection_dim, seed,
                                         hyperbolic, flat)

  def random_params(self, config, seed=0):
    return family.numpy_tree(modeling.init_params(config, jax.random.key(seed)))

  def load_tokenizer(self, model_dir):
    return cleaned_tokenizer.bpe_tokenizer()

  def preprocessing(self, model_dir, config, use="classification"):
    """[0, 1] pixels (the model normalises) at the image size, bicubic: the short side
    resized and the centre cropped (MERU's zero-shot classification and traversal), or the
    whole image squashed to a square (use="retrieval", MERU's retrieval)."""
    size = config.vision.image_size
    return clip_preprocessing.Preprocessing(size, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                                            squash=use == "retrieval",
                                            round_crop=True)  # torchvision's CenterCrop

  def pool_index(self, config, ids):
    return ids.argmax(axis=-1)  # EOT, the largest id

  def geometry(self, params, config):
    """The hyperboloid of the stored curvature; the sphere for the CLIP baseline (no
    curvature); flat R^P where the sizes record says `flat` (only our writer puts it)."""
    if config.flat:
      return flat.FLAT
    if "curv" not in params:
      return sphere.SPHERE
    return lorentz.Lorentz(float(np.exp(np.asarray(params["curv"], np.float64))))

  def encoders(self, config, remat=False):
    text, packed_text, image = modeling.encoders(config, remat)
    return family.Encoders(text=text, packed_text=packed_text, image=image)

  def embedding_size(self, config):
    return config.projection_dim

  def has_stacked_layers(self, params):
    return "layers" in params["textual"]["encoder"]

  def log_logit_scale(self, params):
    return params["logit_scale"]


FAMILY = Meru()
