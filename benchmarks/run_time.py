"""Time to result: the paper's recipe end to end (`python -m hierre_jax.train`: read the
data, load the model, the pull-back cache, compile, the steps, evaluations of HierarCaps,
HyperLex and the COCO 1K subset at the start and the end, export), where the wall time
goes, for today's embedding path beside the earlier one, each in a fresh process with an
empty compilation cache.

  today:   texts packed several to a row outside the train step (cache, evaluations),
           images decoded by a thread per CPU ahead of the device, each image embedded
           once per run (config.eval.pack_texts, image_workers, keep_image_features);
  earlier: texts padded per length bucket, images decoded one at a time, every image
           embedded again at every evaluation.

  python -m benchmarks.run_time [--model demo|vit_b32] [--steps N] [--data_dir ../shared]
      [-- --config.key=value ...]   (given to every variant, e.g. --config.compute_dtype=bfloat16)

demo: configs/demo.py's small random CLIP (CPU); vit_b32: a random ViT-B/32 with
configs/clip_b32.py, one epoch of the shared training rows unless --steps (GPU).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from hierre_jax.models.clip import random_init

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "today": [],
    "earlier": ["--config.eval.pack_texts=False", "--config.eval.image_workers=1",
                "--config.eval.keep_image_features=False"],
}


def command(args, workdir, model_dir):
  data = os.path.abspath(args.data_dir)
  out = [sys.executable, "-m", "hierre_jax.train", f"--config.workdir={workdir}",
         "--config.compilation_cache_dir=", f"--config.eval.data_dir={data}",
         "--config.eval.suite=hyperlex,coco", "--config.eval.allow_missing_images=True",
         f"--config.eval.paths.coco_images={data}/hierarcaps/test_images",
         f"--config.eval.test_csv={data}/hierarcaps/hierarcaps_test.csv",
         f"--config.eval.images_dir={data}/hierarcaps/test_images",
         f"--config.eval.heldout_csv={data}/hierarcaps/hierarcaps_test_expanded.csv.gz",
         f"--config.train_csv={data}/hierarcaps/hierarcaps_coco_train.csv.gz"]
  if args.model == "demo":
    out[3:3] = ["--config", "configs/demo.py"]
  else:
    out[3:3] = ["--config", "configs/clip_b32.py", f"--config.model={model_dir}"]
  if args.steps:
    out.append(f"--config.total_steps={args.steps}")
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", choices=["demo", "vit_b32"], default="demo")
  parser.add_argument("--steps", type=int, default=0, help="0: the config's")
  parser.add_argument("--data_dir", default=os.path.join(common.SHARED, ".."))
  parser.add_argument("--variants", default="earlier,today")
  parser.add_argument("config_flags", nargs="*", help="--config.key=value for every variant")
  args = parser.parse_args()
  tmp = tempfile.mkdtemp()
  model_dir = ""
  if args.model == "vit_b32":
    model_dir = random_init.write_random_clip(
        os.path.join(tmp, "model"), random_init.VIT_B32["text_config"],
        random_init.VIT_B32["vision_config"], random_init.VIT_B32["projection_dim"])
  results = {}
  for name in args.variants.split(","):
    workdir = os.path.join(tmp, name)
    start = time.perf_counter()
    run = subprocess.run(command(args, workdir, model_dir) + args.config_flags + VARIANTS[name],
                         cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode:
      sys.exit(f"{name}: the run failed:\n{run.stderr[-3000:]}")
    with open(os.path.join(workdir, "train_summary.json")) as f:
      summary = json.load(f)
    results[name] = {**summary["seconds"], "process wall (imports included)": wall}
    with open(os.path.join(workdir, "eval_step_0.json")) as f:
      results[name]["tau_d at step 0"] = json.load(f)["tau_d"]
    steps = summary["steps"]
    print(f"  {name}: {wall:.0f} s, {steps} steps", file=sys.stderr, flush=True)
  names = list(results)
  phases = list(dict.fromkeys(k for r in results.values() for k in r))
  print(f"Time to result, {args.model} ({steps} steps): seconds per phase "
        "(train_summary.json), one run each in a fresh process, empty compilation cache")
  common.row("phase", *names)
  for phase in phases:
    common.row(phase, *(f"{results[n].get(phase, 0.0):.3g}" for n in names))


if __name__ == "__main__":
  main()
