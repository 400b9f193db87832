"""ALIGN throughput: jitted Flax towers and the RE train step vs transformers' AlignModel
in PyTorch.

align-base shapes (BERT-base text tower, EfficientNet-B7 image tower; the offline
WordPiece vocabulary holds the words of the training rows used, so the word-embedding
table is small, which changes no throughput), random weights re-drawn so that features
carry signal; the towers on texts of 64 tokens and images of 289 x 289; the RE step of
configs/align_base.py (packed texts, pull-back cache) against the PyTorch step padded to
the longest text with its attention mask (`benchmarks/re_step.py`), on HierarCaps training
rows; same machine, one run:

  python -m benchmarks.align_throughput [--text_batch 64] [--image_batch 8] [--repeats 3]
      [--batch_size 8] [--steps 5]
"""
import argparse
import re
import tempfile

import jax
import numpy as np
import torch
import transformers

from benchmarks import common
from benchmarks import re_step
from configs import align_base
from hierre_jax import models
from hierre_jax.common import sharding
from hierre_jax.models.align import random_init

BASE_TEXT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
BASE_VISION = dict(image_size=289, hidden_dim=640, depthwise_padding=[])


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  args, device = common.tower_and_step_args(parser)
  data = common.step_rows(args.train_csv, args.batch_size, args.steps)
  words = re.findall(r"[a-z0-9]+", " ".join(t for row in data.positives + data.negatives
                                             for t in row).lower())
  d = tempfile.mkdtemp()
  random_init.write_random_align(d, BASE_TEXT, BASE_VISION, 640, words=list(dict.fromkeys(words)))
  model = models.load(d)
  config, params = model.config, model.params
  torch_model = transformers.AlignModel.from_pretrained(d).eval().to(device)
  rng = np.random.default_rng(0)
  ids = rng.integers(104, config.text.vocab_size, (args.text_batch, 64)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  pixels = rng.normal(size=(args.image_batch, 289, 289, 3)).astype(np.float32)
  encoders = model.encoders()
  params = jax.device_put(params)
  ids_torch = torch.from_numpy(ids).long().to(device)
  pixels_torch = torch.from_numpy(pixels.transpose(0, 3, 1, 2)).to(device)
  rows = [("text", args.text_batch, *common.compare_tower(
              encoders.text, params, jax.device_put(ids), lambda: torch_model.get_text_features(
                  input_ids=ids_torch, attention_mask=torch.ones_like(ids_torch)),
              args.repeats, device)),
          ("image", args.image_batch, *common.compare_tower(
              encoders.image, params, jax.device_put(pixels),
              lambda: torch_model.get_image_features(pixel_values=pixels_torch), args.repeats,
              device))]
  step_config = align_base.get_config()
  step_config.batch_size = args.batch_size
  steps = range(args.steps)
  jax_run = re_step.jax_steps(d, step_config, data, steps, sharding.make_mesh())
  torch_run = re_step.torch_steps(torch_model, [torch_model.text_model, torch_model.text_projection], d, step_config, data, steps, device)
  (jax_s, torch_s), losses = re_step.timed_rounds([jax_run.run, torch_run], args.repeats)
  common.tower_table(
      f"ALIGN (align-base shapes), JAX on {jax.devices()[0].platform}, torch on {device} "
      f"({torch.get_num_threads()} threads), fp32 at highest matmul precision, median (min-max) of "
      f"{args.repeats} interleaved rounds", rows,
      (args.batch_size, args.steps, jax_run.compile_seconds, jax_s, torch_s))
  common.step_floor(re_step.batches_of(d, data, step_config).lengths, BASE_TEXT, 640,
                    args.batch_size * args.steps, jax_s, torch_s)
  print(f"RE step, last loss of the first round: hierre_jax {losses[0]:.6f}, PyTorch "
        f"{losses[1]:.6f}")


if __name__ == "__main__":
  main()
