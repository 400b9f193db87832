"""CLIP image preprocessing in numpy/PIL, matching transformers' CLIPImageProcessor.

Resize the shortest side to `size` (bicubic, or the config's `resample`), center crop `crop` x `crop` (HF's offset, or
torchvision's with `round_crop`) (or, `squash`, resize the whole image to `crop` x `crop`),
scale to [0, 1], normalise with the mean/std.
Output is NHWC float32.
"""
import dataclasses
import json
import os

import numpy as np
from PIL import Image

from hierre_jax.common import errors
from hierre_jax.data import images

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  size: int = 224  # shortest side after resizing
  crop: int = 224
  mean: tuple = OPENAI_CLIP_MEAN
  std: tuple = OPENAI_CLIP_STD
  squash: bool = False  # resize to crop x crop whatever the aspect ratio, nothing cropped
  # The centre crop's offset: HF's image processors floor (h - crop) / 2; torchvision's
  # CenterCrop (open_clip's and MERU's transforms) rounds it (half to even, as Python's round)
  round_crop: bool = False
  resample: int = 3  # PIL's filter number, as preprocessor_config.json's "resample" (3: bicubic)

  @classmethod
  def from_model_dir(cls, model_dir, image_size):
    """From preprocessor_config.json when the checkpoint has one, else CLIP defaults at `image_size`."""
    path = os.path.join(model_dir, "preprocessor_config.json")
    if not os.path.exists(path):
      return cls(image_size, image_size)
    with open(path) as f:
      c = json.load(f)
    size = c.get("size", image_size)
    crop = c.get("crop_size", image_size)
    return cls(size["shortest_edge"] if isinstance(size, dict) else size,
               crop["height"] if isinstance(crop, dict) else crop,
               tuple(c.get("image_mean", OPENAI_CLIP_MEAN)),
               tuple(c.get("image_std", OPENAI_CLIP_STD)),
               resample=resample_of(c, path))


  def preprocess(self, image):
    """PIL image or path -> [crop, crop, 3] float32 (`preprocess`)."""
    return preprocess(image, self)

  def write_hf_config(self, model_dir):
    """Writes model_dir/preprocessor_config.json: transformers' CLIPImageProcessor with these
    settings (what `CLIPProcessor.from_pretrained` needs beside the tokenizer files)."""
    config = {"image_processor_type": "CLIPImageProcessor", "do_convert_rgb": True,
              "do_resize": True, "size": {"shortest_edge": self.size}, "resample": self.resample,
              "do_center_crop": True, "crop_size": {"height": self.crop, "width": self.crop},
              "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
              "image_mean": list(self.mean), "image_std": list(self.std)}
    with open(os.path.join(model_dir, "preprocessor_config.json"), "w") as f:
      json.dump(config, f, indent=2)


def resample_of(preprocessor_config, path):
  """The "resample" filter of a preprocessor config (3, bicubic, where it names none); a
  value that is no PIL filter is refused naming the file."""
  value = preprocessor_config.get("resample", 3)
  if value not in {int(r) for r in Image.Resampling}:
    raise errors.UserError(f"{path}: resample={value!r} is not a PIL filter number "
                           f"({', '.join(f'{int(r)} {r.name.lower()}' for r in Image.Resampling)})")
  return int(value)


def resized_shape(width, height, size):
  """(width, height) with the shortest side scaled to `size`, the other truncated like HF."""
  if width <= height:
    return size, int(size * height / width)
  return int(size * width / height), size


def preprocess(image, p: Preprocessing):
  """PIL image or path -> [crop, crop, 3] float32."""
  image = images.open_rgb(image)
  shape = (p.crop, p.crop) if p.squash else resized_shape(*image.size, p.size)
  image = image.resize(shape, Image.Resampling(p.resample))
  x = np.asarray(image, np.float32)
  offset = ((lambda extra: int(round(extra / 2.0))) if p.round_crop
            else (lambda extra: extra // 2))
  top, left = offset(x.shape[0] - p.crop), offset(x.shape[1] - p.crop)
  if top < 0 or left < 0:
    raise ValueError(f"image of size {x.shape[1]}x{x.shape[0]} is smaller than the crop {p.crop}")
  x = x[top:top + p.crop, left:left + p.crop] / 255.0
  return ((x - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)).astype(np.float32)
