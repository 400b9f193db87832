"""Text-tower forward throughput (texts/s): jitted Flax tower vs the PyTorch reference.

ViT-B/32 text shape, random weights, batch 64 x 77 tokens, same machine, one run:

  python -m benchmarks.text_tower_throughput [--batch 64] [--repeats 5]
"""
import argparse
import tempfile

import jax
import numpy as np
import torch

from benchmarks import common
from hierre_jax import embedding
from hierre_jax import models


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--length", type=int, default=77)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--precision", choices=["highest", "default"], default="highest",
                      help="fp32 matmuls: highest = true fp32 in both; default = TF32 allowed "
                      "in both (GPU)")
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", args.precision)
  torch.backends.cuda.matmul.allow_tf32 = args.precision == "default"
  torch.backends.cudnn.allow_tf32 = args.precision == "default"

  with tempfile.TemporaryDirectory() as d:
    torch_model = common.vit_b32_torch_checkpoint(d)
    model = models.load(d)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_model = torch_model.to(device)
  ids = np.random.default_rng(0).integers(1, 49406, (args.batch, args.length)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 49406, 49407

  text = jax.device_put(model.text_params())
  encode = jax.jit(embedding.text_encoder(model))
  ids_jax = jax.device_put(ids)
  ids_torch = torch.from_numpy(ids).long().to(device)

  def torch_forward():
    with torch.inference_mode():
      out = torch_model.get_text_features(input_ids=ids_torch)
      out = getattr(out, "pooler_output", out)
      out = out / out.norm(dim=-1, keepdim=True)
    if device == "cuda":
      torch.cuda.synchronize()
  jax_s, torch_s = common.side_by_side(
      [lambda: encode(text, ids_jax).block_until_ready(), torch_forward], args.repeats)

  with torch.inference_mode():
    want = torch_model.get_text_features(input_ids=ids_torch)
  want = getattr(want, "pooler_output", want)
  want = (want / want.norm(dim=-1, keepdim=True)).cpu().numpy()
  max_err = float(np.abs(np.asarray(encode(text, ids_jax)) - want).max())

  print(f"text tower forward, ViT-B/32 shape, batch {args.batch} x {args.length} tokens, "
        f"JAX on {jax.devices()[0].platform}, torch on {device} "
        f"({torch.get_num_threads()} threads), fp32 matmul precision {args.precision}, "
        f"median (min-max) of {args.repeats} interleaved rounds")
  common.row("", "seconds/batch", "texts/s")
  common.row("hierre_jax (jax.jit, Flax)", f"{np.median(jax_s):.4f}",
             common.per_second(args.batch, jax_s))
  common.row("PyTorch transformers.CLIPModel", f"{np.median(torch_s):.4f}",
             common.per_second(args.batch, torch_s))
  common.row("speed-up of hierre_jax", "", common.ratio(torch_s, jax_s))
  print(f"max |difference| of the unit features: {max_err:.2e}")


if __name__ == "__main__":
  main()
