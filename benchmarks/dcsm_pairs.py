"""DCSM throughput: dense-map construction plus scoring of multiple-choice items, hierre_jax
(jitted Flax towers, maps and CNN) vs the same computation in PyTorch on transformers'
CLIPModel (the release's path: the processor, every vision token through post-LayerNorm and
the visual projection, every text token through the text projection, the maps, functional
rows, the item's z-score, the CNN).

Random-weight CLIP ViT-B/16 (197 x 30 maps, the released scorer's 3,026,365-parameter CNN),
items of one 224 px image and K captions (WhatsUp-like: K = 4), from PIL images and strings
to scores; same machine, one run:

  python -m benchmarks.dcsm_pairs [--items 8] [--k 4] [--repeats 3]
"""
import argparse
import tempfile

import jax
import numpy as np
from PIL import Image
import torch
import transformers

from benchmarks import common
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import scorer
from hierre_jax.dcsm import scoring
from hierre_jax.models.clip import random_init
from hierre_jax.models.clip import tokenizer as clip_tokenizer

VIT_B16 = dict(random_init.VIT_B32, vision_config=dict(random_init.VIT_B32["vision_config"],
                                                        patch_size=16))
WORDS = ("circle", "star", "mug", "table", "dog", "cat")
RELATIONS = ("above", "below", "to the left of", "to the right of")


class TorchScorer(torch.nn.Module):
  """The release's CNN (DCSM_SPEC section 5), eval mode."""

  def __init__(self, rows, cols=30):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
    self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
    self.fc1 = torch.nn.Linear(4 * rows * cols, 128)
    self.fc2 = torch.nn.Linear(128, 1)

  def forward(self, x):
    x = torch.relu(self.conv2(torch.relu(self.conv1(x[:, None]))))
    return self.fc2(torch.relu(self.fc1(x.flatten(1))))[:, 0]


def torch_scores(model, processor, tok, cnn, table, images, captions, column_rule):
  """The release's computation, item by item batched over the items -> [N, K]."""
  n, k = len(captions), len(captions[0])
  flat = [c for options in captions for c in options]
  with torch.no_grad():
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    vision = model.vision_model(pixel_values=pixels).last_hidden_state
    v = model.visual_projection(model.vision_model.post_layernorm(vision))
    v = v / v.norm(dim=-1, keepdim=True)
    enc = tok(flat, padding="max_length", max_length=30, truncation=True, return_tensors="pt")
    t = model.text_projection(model.text_model(**enc).last_hidden_state)
    t = (t / t.norm(dim=-1, keepdim=True)).reshape(n, k, 30, -1)
    m = torch.einsum("nrp,nktp->nkrt", v, t)
    for j, caption in enumerate(flat):
      sources = maps.column_sources(caption, tok, column_rule)
      for column in np.flatnonzero(sources < 0):
        m[j // k, j % k, :, column] = table[-sources[column] - 1]
    mean = m.mean(dim=(1, 2, 3), keepdim=True)
    std = m.flatten(1).std(dim=1).reshape(n, 1, 1, 1)
    return cnn(((m - mean) / std).reshape(n * k, *m.shape[2:])).reshape(n, k).numpy()


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--items", type=int, default=8)
  parser.add_argument("--k", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as model_dir:
    model = transformers.CLIPModel(transformers.CLIPConfig(**VIT_B16)).eval()
    model.save_pretrained(model_dir)
    clip_tokenizer.write_clip_vocab(model_dir)
    features = maps.TokenFeatures(model_dir, batch_size=args.items)
    features.preprocessing.write_hf_config(model_dir)  # the same preprocessing for PyTorch
    processor = transformers.CLIPImageProcessor.from_pretrained(model_dir)
    tok = clip_tokenizer.load_tokenizer(model_dir)
    rows = features.rows
    params = scorer.init_params(rows, maps.COLUMNS)
    table = maps.functional_table(rows)
    cnn = TorchScorer(rows).eval()
    cnn.load_state_dict({k: torch.tensor(v) for k, v in
                         scorer.to_state_dict(params, rows, maps.COLUMNS).items()})
    images = [Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
              for _ in range(args.items)]
    captions = []
    for _ in range(args.items):
      a, b = rng.choice(WORDS, 2, replace=False)
      captions.append(tuple(f"A {a} {r} a {b}" for r in RELATIONS[:args.k]))
    dense = scoring.DenseScorer(features, params, table, maps.MapOptions())
    ours = dense.score(images, captions)
    theirs = torch_scores(model, processor, tok, cnn, torch.tensor(table), images, captions,
                          "release")
    print(f"max |score difference| hierre_jax vs PyTorch: {np.abs(ours - theirs).max():.2e}")
    jax_s, torch_s = common.side_by_side(
        [lambda: dense.score(images, captions),
         lambda: torch_scores(model, processor, tok, cnn, torch.tensor(table), images,
                              captions, "release")], args.repeats)
    pairs = args.items * args.k
    print(f"random CLIP ViT-B/16, {rows} x {maps.COLUMNS} maps, {args.items} items x "
          f"{args.k} captions, {jax.devices()[0].platform}, median (min-max) of "
          f"{args.repeats} interleaved rounds")
    common.row("", "hierre_jax", "PyTorch", "speed-up")
    common.row("pairs / s (maps + scoring, from PIL)", common.per_second(pairs, jax_s),
               common.per_second(pairs, torch_s), common.ratio(torch_s, jax_s))
    common.row("items / s", common.fmt(args.items / jax_s), common.fmt(args.items / torch_s),
               common.speedup(torch_s, jax_s))


if __name__ == "__main__":
  main()
