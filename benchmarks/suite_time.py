"""The evaluation suite's end-to-end time with a random ViT-B/32 on the real data here,
split into embedding (tokenise + text tower, decode + preprocess + image tower,
compilation included) and scoring (the rest: ranking and metrics; annotation files are
read when the evaluators are built, except the HierarCaps CSV, read in its run).

First COCO retrieval alone on the 1K subset (the 1000 HierarCaps test images, their
~5,000 val2017 captions) with a fresh model, then the offline suite HierarCaps +
HyperLex + COCO 1K as `python -m hierre_jax.evaluate` runs it: one model, whose image
features are kept per path, so COCO reuses the HierarCaps test images' features.

Then the suite's arithmetic floor measured in the same run: its tower FLOPs at the fp32
matmul rate of this machine (`tower_tflop`), and the suite's time against it.

  python -m benchmarks.suite_time [--data_dir ../shared]
  python -m benchmarks.suite_time --baseline_repo DIR   # DIR: a checkout of an earlier
      commit (git worktree add DIR REV): its suite, then today's, each in a fresh process

"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from hierre_jax import loading
from hierre_jax.data import text as text_ids
from hierre_jax.evaluators import suite
from hierre_jax.models.clip import random_init


class TimedEmbedder:
  """An Embedder that adds the seconds spent in texts() and images() to `seconds`, and
  keeps the distinct texts and images it was given (`seen`)."""

  def __init__(self, embedder):
    self.embedder = embedder
    self.seconds = {"texts": 0.0, "images": 0.0}
    self.seen = {"texts": set(), "images": set()}

  def _timed(self, kind, items):
    self.seen[kind].update(map(str, items))
    start = time.perf_counter()
    out = getattr(self.embedder, kind)(items)
    self.seconds[kind] += time.perf_counter() - start
    return out

  def texts(self, texts):
    return self._timed("texts", texts)

  def images(self, images):
    return self._timed("images", images)


def timed_run(evaluator, embedder):
  """-> (metrics, embed texts s, embed images s, scoring s) of one evaluator."""
  before = dict(embedder.seconds)
  start = time.perf_counter()
  metrics = evaluator.run(embedder)
  total = time.perf_counter() - start
  texts = embedder.seconds["texts"] - before["texts"]
  images = embedder.seconds["images"] - before["images"]
  return metrics, texts, images, total - texts - images


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--data_dir", default=os.path.join(common.SHARED, ".."))
  parser.add_argument("--baseline_repo", default="", help="compare with this checkout")
  args = parser.parse_args()
  if args.baseline_repo:
    compare(args)
    return
  paths = suite.default_paths(args.data_dir)
  paths["coco_images"] = paths["hierarcaps_images"]  # the COCO 1K subset

  model_dir = tempfile.mkdtemp()
  v = random_init.VIT_B32
  random_init.write_random_clip(model_dir, v["text_config"], v["vision_config"],
                                v["projection_dim"])
  new_embedder = lambda: TimedEmbedder(loading.embedder(model_dir))
  print("random ViT-B/32 on this machine; seconds include each shape's first compilation")
  common.row("evaluation", "items", "embed texts", "embed images", "scoring", "total")

  coco, = suite.build(["coco"], paths, {"allow_missing_images": True})
  metrics, texts, images, scoring = timed_run(coco, new_embedder())
  items = f"{metrics['num_captions']}x{metrics['num_images']}"
  common.row("COCO 1K alone (fresh model)", items, f"{texts:.1f}", f"{images:.1f}",
             f"{scoring:.2f}", f"{texts + images + scoring:.1f}")

  embedder = new_embedder()
  evaluators = suite.build(["hierarcaps", "hyperlex", "coco"], paths,
                           {"allow_missing_images": True})
  sums = [0.0, 0.0, 0.0]
  for evaluator in evaluators:
    _, texts, images, scoring = timed_run(evaluator, embedder)
    sums = [s + x for s, x in zip(sums, (texts, images, scoring))]
    common.row(f"suite: {evaluator.name}", "", f"{texts:.1f}", f"{images:.1f}",
               f"{scoring:.2f}", f"{texts + images + scoring:.1f}")
  common.row("suite: HierarCaps + HyperLex + COCO 1K", "", *(f"{s:.1f}" for s in sums),
             f"{sum(sums):.1f}")
  tflop, gflops = tower_tflop(embedder), common.matmul_gflops()
  floor = tflop * 1e3 / gflops
  print(f"arithmetic floor: {tflop:.2f} TFLOP of tower work ({len(embedder.seen['texts'])} "
        f"distinct texts at their token counts, {len(embedder.seen['images'])} images) at "
        f"{gflops:.1f} GFLOP/s (XLA 4096^2 fp32 matmul, measured now) = {floor:.1f} s; the "
        f"suite took {sum(sums):.1f} s = {sum(sums) / floor:.2f}x it")


def tower_tflop(embedder):
  """Model TFLOP of the suite's towers: each distinct text once through the ViT-B/32 text
  tower at its token count, each distinct image once through the image tower (50 tokens
  and the patch embedding); padding, compilation and decoding are not arithmetic it
  needs."""
  v = random_init.VIT_B32
  model = embedder.embedder.model
  lengths = [len(ids) for ids in text_ids.tokenize(
      model.tokenizer, sorted(embedder.seen["texts"]), model.max_length)]
  vision = v["vision_config"]
  patches = (vision["image_size"] // vision["patch_size"]) ** 2
  per_image = (common.forward_flops([patches + 1], vision, v["projection_dim"])
               + 2 * 3 * vision["patch_size"] ** 2 * vision["hidden_size"] * patches)
  return (common.forward_flops(lengths, v["text_config"], v["projection_dim"])
          + len(embedder.seen["images"]) * per_image) / 1e12


def compare(args):
  """Runs this benchmark in the baseline checkout, then here, each in a fresh process."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  totals = {}
  for name, repo in (("baseline", args.baseline_repo), ("today", here)):
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    run = subprocess.run([sys.executable, "-m", "benchmarks.suite_time", "--data_dir",
                          os.path.abspath(args.data_dir)], cwd=repo, capture_output=True,
                         text=True)
    if run.returncode:
      sys.exit(f"{name} ({repo}) failed:\n{run.stderr[-3000:]}")
    print(f"{name}: {repo} at {commit}\n{run.stdout}")
    totals[name] = float(next(line for line in run.stdout.splitlines() if line.startswith(
        "suite: HierarCaps + HyperLex + COCO 1K")).split()[-1])
  print(f"suite total: baseline {totals['baseline']:.1f} s, today {totals['today']:.1f} s "
        f"({totals['today'] / totals['baseline']:.2f}x the time)")


if __name__ == "__main__":
  main()
