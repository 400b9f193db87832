"""ALIGN image preprocessing in numpy/PIL, matching transformers' EfficientNetImageProcessor
with align-base's settings: resize to exactly 346 x 346 (bilinear; the aspect ratio is not
kept), centre crop 289, x / 127.5 - 1. Output is NHWC float32."""
import dataclasses
import json
import os

import numpy as np
from PIL import Image

from hierre_jax.data import images


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  height: int = 346
  width: int = 346
  crop: int = 289
  center_crop: bool = True
  resample: int = 2  # PIL's BILINEAR, as align-base's preprocessor_config.json says
  rescale_factor: float = 1 / 127.5
  offset: bool = True  # x * factor - 1
  normalize: bool = False
  mean: tuple = (0.5, 0.5, 0.5)
  std: tuple = (0.5, 0.5, 0.5)

  @classmethod
  def from_model_dir(cls, model_dir):
    """From preprocessor_config.json (or the image_processor entry of
    processor_config.json, as transformers 5 saves it), else align-base's settings."""
    for name, entry in (("preprocessor_config.json", None),
                        ("processor_config.json", "image_processor")):
      path = os.path.join(model_dir, name)
      if os.path.exists(path):
        with open(path) as f:
          c = json.load(f)
        c = c.get(entry, {}) if entry else c
        size, crop = c.get("size", {}), c.get("crop_size", {})
        return cls(size.get("height", 346), size.get("width", 346), crop.get("height", 289),
                   c.get("do_center_crop", True), c.get("resample", 2),
                   c.get("rescale_factor", 1 / 127.5), c.get("rescale_offset", True),
                   c.get("do_normalize", False), tuple(c.get("image_mean", (0.5,) * 3)),
                   tuple(c.get("image_std", (0.5,) * 3)))
    return cls()

  def preprocess(self, image):
    """PIL image or path -> [crop, crop, 3] float32 (or [height, width, 3] uncropped)."""
    image = images.open_rgb(image).resize((self.width, self.height), Image.Resampling(
        self.resample))
    x = np.asarray(image, np.float32)
    if self.center_crop:
      top, left = (self.height - self.crop) // 2, (self.width - self.crop) // 2
      x = x[top:top + self.crop, left:left + self.crop]
    x = x * np.float32(self.rescale_factor) - (1 if self.offset else 0)
    if self.normalize:
      x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
    return x.astype(np.float32)

  def write_hf_config(self, model_dir):
    """Writes model_dir/preprocessor_config.json (transformers' EfficientNetImageProcessor)."""
    config = {"image_processor_type": "EfficientNetImageProcessor",
              "processor_class": "AlignProcessor", "do_resize": True,
              "size": {"height": self.height, "width": self.width}, "resample": self.resample,
              "do_center_crop": self.center_crop,
              "crop_size": {"height": self.crop, "width": self.crop}, "do_rescale": True,
              "rescale_factor": self.rescale_factor, "rescale_offset": self.offset,
              "do_normalize": self.normalize, "image_mean": list(self.mean),
              "image_std": list(self.std), "include_top": False}
    with open(os.path.join(model_dir, "preprocessor_config.json"), "w") as f:
      json.dump(config, f, indent=2)
