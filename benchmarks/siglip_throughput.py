"""SigLIP throughput: jitted Flax towers and the RE train step vs transformers' SiglipModel
in PyTorch.

siglip-base-patch16-224 shapes (768/3072/12/12 towers, 64 text positions, 224 px in patches of
16; a 32000-token table with a small SentencePiece vocabulary trained here, which changes no
throughput), random weights; the towers on texts of 64 tokens (SigLIP always pads to 64) and
224 x 224 images; the RE step of configs/siglip_b16.py (the pull-back cache; every text is a
64-token row) against the PyTorch step (`benchmarks/re_step.py`: the same 64-token rows,
their all-ones mask), on HierarCaps training rows; same machine, one run:

  python -m benchmarks.siglip_throughput [--text_batch 64] [--image_batch 8] [--repeats 3]
      [--batch_size 8] [--steps 5]
"""
import argparse
import tempfile

import jax
import numpy as np
import torch
import transformers

from benchmarks import common
from benchmarks import re_step
from configs import siglip_b16
from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.models.siglip import random_init

BASE = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12)


def main():
  args, device = common.tower_and_step_args(argparse.ArgumentParser(description=__doc__))
  data = common.step_rows(args.train_csv, args.batch_size, args.steps)
  d = random_init.write_random_siglip(
      tempfile.mkdtemp(), dict(BASE, max_position_embeddings=64, vocab_size=32000),
      dict(BASE, image_size=224, patch_size=16), 768)
  model = models.load(d)
  torch_model = transformers.SiglipModel.from_pretrained(d).eval().to(device)
  rng = np.random.default_rng(0)
  ids = rng.integers(3, random_init.MAX_SPIECE_VOCAB, (args.text_batch, 64)).astype(np.int32)
  ids[:, -8:] = 1  # eos, then eos as padding
  pixels = rng.normal(size=(args.image_batch, 224, 224, 3)).astype(np.float32)
  encoders = model.encoders()
  params = jax.device_put(model.params)
  ids_torch = torch.from_numpy(ids).long().to(device)
  pixels_torch = torch.from_numpy(pixels.transpose(0, 3, 1, 2)).to(device)
  rows = [("text", args.text_batch, *common.compare_tower(
              encoders.text, params, jax.device_put(ids),
              lambda: torch_model.get_text_features(input_ids=ids_torch), args.repeats, device)),
          ("image", args.image_batch, *common.compare_tower(
              encoders.image, params, jax.device_put(pixels),
              lambda: torch_model.get_image_features(pixel_values=pixels_torch), args.repeats,
              device))]
  step_config = siglip_b16.get_config()
  step_config.batch_size = args.batch_size
  steps = range(args.steps)
  jax_run = re_step.jax_steps(d, step_config, data, steps, sharding.make_mesh())
  torch_run = re_step.torch_steps(torch_model, [torch_model.text_model], d, step_config, data, steps, device)
  (jax_s, torch_s), losses = re_step.timed_rounds([jax_run.run, torch_run], args.repeats)
  common.tower_table(
      f"SigLIP (siglip-base-patch16-224 shapes), JAX on {jax.devices()[0].platform}, torch on "
      f"{device} ({torch.get_num_threads()} threads), fp32 at highest matmul precision, median "
      f"(min-max) of {args.repeats} interleaved rounds", rows,
      (args.batch_size, args.steps, jax_run.compile_seconds, jax_s, torch_s))
  common.step_floor(re_step.batches_of(d, data, step_config).lengths, BASE, 768,
                    args.batch_size * args.steps, jax_s, torch_s)
  print(f"RE step, last loss of the first round: hierre_jax {losses[0]:.6f}, PyTorch "
        f"{losses[1]:.6f}")


if __name__ == "__main__":
  main()
