"""python -m hierre_jax.dcsm COMMAND [flags]

  train      --config configs/dcsm/<name>.py [--config.key=value]  the scorer on a frozen CLIP
  evaluate   --model=M [--scorer=S] --benchmarks=a,b --data_dir=D --output_dir=OUT
  make-data  --out DIR [--seed S] [--overwrite]  the procedural training and test sets
  import     --checkpoint dcsm_obja_ckpt.pt --out DIR [--num_heads=T,V]  the released
             checkpoint (needs torch)
  export-release  --scorer=S --model=M --out FILE.pt [--any_backbone]  the release's .pt
             layout, and FILE.config.json (the CLIP's sizes) beside it (needs torch)
"""
from absl import flags

from hierre_jax.common import cli
from hierre_jax.common import errors
from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import checkpoint
from hierre_jax.dcsm import evaluate
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import procedural
from hierre_jax.dcsm import training

COMMANDS = ("train", "evaluate", "make-data", "import", "export-release")
FLAGS = flags.FLAGS
cli.define_train_flags("train: a configs/dcsm/*.py file")
flags.DEFINE_string("model", None, "evaluate / export-release: the frozen model (HF "
                    "directory, hub id or train workdir).")
flags.DEFINE_string("scorer", "", "evaluate: a scorer folder or the released .pt checkpoint; "
                    "empty: the global cosine only. export-release: a scorer folder.")
flags.DEFINE_list("benchmarks", [], "evaluate: any of " + ", ".join(
    list(benchmarks.READERS) + list(benchmarks.PROCEDURAL)))
flags.DEFINE_string("data_dir", None, "evaluate: the folder holding the benchmarks' files.")
flags.DEFINE_string("output_dir", None, "evaluate: where results.json and results.md go.")
flags.DEFINE_bool("allow_missing_images", False, "evaluate: score the items whose image "
                  "exists (the count of the others is recorded) instead of refusing.")
flags.DEFINE_integer("min_images", evaluate.retrieval.MIN_IMAGES, "evaluate: with "
                     "--allow_missing_images, refuse a benchmark left with fewer items.")
flags.DEFINE_bool("release_rewrites", True, "evaluate: the release's caption rewrites for "
                  "every scorer (WhatsUp on/under, prefixes).")
flags.DEFINE_bool("dcsm_rewrites", True, "evaluate: the release's DCSM-only rewrites "
                  "(behind/in front of/bottom/top).")
flags.DEFINE_enum("column_rule", "", [""] + list(maps.COLUMN_RULES), "evaluate: override the "
                  "scorer's functional-row column rule (empty: the scorer's own).")
flags.DEFINE_integer("batch_size", 32, "evaluate: images per device batch.")
flags.DEFINE_string("out", None, "make-data / import: the output folder; export-release: the "
                    ".pt file (new).")
flags.DEFINE_integer("seed", 0, "make-data: the seed of every drawing.")
flags.DEFINE_bool("overwrite", False, "make-data: replace a set make-data wrote at --out "
                  "(its seal verifying, no other file there); any other folder is refused.")
flags.DEFINE_integer("size", 64, "make-data: canvas side in pixels.")
flags.DEFINE_integer("train_pairs", 600, "make-data: pairs per training set.")
flags.DEFINE_integer("test_items", 200, "make-data: items per test set.")
flags.DEFINE_string("checkpoint", None, "import: the released dcsm_obja_ckpt.pt.")
flags.DEFINE_list("num_heads", [], "import: attention heads of the checkpoint's CLIP, one "
                  "value for both towers or TEXT,VISION (a state dict does not store them); "
                  "default: the X.config.json beside X.pt, else OpenAI's by width.")
flags.register_validator("num_heads", lambda v: len(v) <= 2 and all(
    h.isdigit() and int(h) > 0 for h in v), "--num_heads: one or two positive integers")
flags.DEFINE_bool("any_backbone", False, "export-release: write a CLIP other than the "
                  "release's ViT-B/16 (its code builds that and cannot load another).")


def require(*names):
  missing = [f"--{n}" for n in names if not getattr(FLAGS, n)]
  if missing:
    raise errors.UserError(f"{' and '.join(missing)} required")


def main(argv):
  command = argv[1] if len(argv) > 1 else ""
  if command not in COMMANDS or len(argv) > 2:
    raise errors.UserError(f"usage: python -m hierre_jax.dcsm {{{'|'.join(COMMANDS)}}} "
                           f"[flags] (got {' '.join(argv[1:]) or 'no command'})")
  if command == "train":
    require("config")
    training.train(FLAGS.config, FLAGS.allow_config_change)
  elif command == "evaluate":
    require("model", "benchmarks", "data_dir", "output_dir")
    evaluate.evaluate(FLAGS.model, FLAGS.scorer, FLAGS.benchmarks, FLAGS.data_dir,
                      FLAGS.output_dir, FLAGS.allow_missing_images, FLAGS.release_rewrites,
                      FLAGS.dcsm_rewrites, FLAGS.column_rule, FLAGS.batch_size,
                      FLAGS.min_images)
  elif command == "make-data":
    require("out")
    print(procedural.make_data(FLAGS.out, FLAGS.seed, FLAGS.size, FLAGS.train_pairs,
                               FLAGS.test_items, FLAGS.overwrite))
  elif command == "export-release":
    require("scorer", "model", "out")
    print(checkpoint.write_release(FLAGS.scorer, FLAGS.model, FLAGS.out, FLAGS.any_backbone))
  else:
    require("checkpoint", "out")
    scorer_dir, clip_dir = checkpoint.import_release(FLAGS.checkpoint, FLAGS.out,
                                                     FLAGS.num_heads)
    print(f"scorer: {scorer_dir}\nCLIP: {clip_dir}")


if __name__ == "__main__":
  cli.run(main)
