"""open_clip-native checkpoints: hierre_jax's jitted towers against open_clip's own model,
side by side in one run.

A random open_clip `ViT-B-32` (or `--model_name`) from `open_clip.create_model`, saved in the
hub layout (open_clip_config.json + open_clip_model.safetensors) and read by hierre_jax;
texts of 77 tokens, 224 x 224 images; fp32 at the highest matmul precision, medians of
`--repeats`. open_clip imports torchvision: run it where open_clip imports (the environment
of `launch/reference_parity.sh`, or the GPU machine):

  python -m benchmarks.open_clip_towers [--model_name ViT-B-32] [--text_batch 64]
      [--image_batch 8] [--repeats 3]
"""
import argparse
import json
import os
import tempfile

import jax
import numpy as np
import safetensors.numpy
import torch

from benchmarks import common
from hierre_jax import models
from hierre_jax.models.open_clip import checkpoint


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model_name", default="ViT-B-32")
  parser.add_argument("--text_batch", type=int, default=64)
  parser.add_argument("--image_batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  import open_clip  # pylint: disable=g-import-not-at-top (needs torchvision)
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  ref = open_clip.create_model(args.model_name).eval()
  d = tempfile.mkdtemp()
  with open(os.path.join(d, "open_clip_config.json"), "w") as f:
    json.dump({"model_cfg": open_clip.get_model_config(args.model_name), "preprocess_cfg": {}}, f)
  safetensors.numpy.save_file({k: v.numpy() for k, v in ref.state_dict().items()},
                              os.path.join(d, checkpoint.SAFETENSORS))
  ref = ref.to(device)
  model = models.load(d)
  size = model.config.vision.image_size
  rng = np.random.default_rng(0)
  texts = [" ".join(rng.choice(["a", "photo", "of", "dog", "red", "small", "on", "the",
                                "grass", "running"], rng.integers(3, 20))) for _ in
           range(args.text_batch)]
  ids = open_clip.get_tokenizer(args.model_name)(texts).numpy().astype(np.int32)
  pixels = rng.normal(size=(args.image_batch, size, size, 3)).astype(np.float32)
  encoders = model.encoders()
  params = jax.device_put(model.params)
  ids_torch = torch.from_numpy(ids).long().to(device)
  pixels_torch = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()).to(device)
  rows = [("text", args.text_batch, *common.compare_tower(
              encoders.text, params, jax.device_put(ids), lambda: ref.encode_text(ids_torch),
              args.repeats, device)),
          ("image", args.image_batch, *common.compare_tower(
              encoders.image, params, jax.device_put(pixels),
              lambda: ref.encode_image(pixels_torch), args.repeats, device))]
  common.tower_table(
      f"open_clip {args.model_name} (random weights, open_clip {open_clip.__version__}), JAX on "
      f"{jax.devices()[0].platform}, torch {torch.__version__} on {device} "
      f"({torch.get_num_threads()} threads), fp32 at highest matmul precision, median (min-max) of "
      f"{args.repeats} interleaved rounds", rows)


if __name__ == "__main__":
  main()
