"""The paper's ablation tables (Tables 3 and 5, SPEC section 6) as resumable grids.

  python -m hierre_jax.ablations --grid=table3 --workdir=DIR [--data_dir=../shared]
  python -m hierre_jax.ablations --grid=table3_cpu,table5_cpu --workdir=DIR \
      --coco_images=../shared/hierarcaps/test_images --allow_missing_images

Every row (variant) of the grids is a config file `<--config_dir>/<variant>.py` with
`apply(config)` (the row's change) and `get_config(scale)`: "full" grids derive it from
configs/clip_b32.py, "_cpu" grids from configs/scratch.py (configs/ablations/common.py);
`--base_config=FILE` applies the rows to another base instead. Each variant trains in
DIR/<variant> (evaluations in training are switched off) and is then evaluated with the
suite (--evals, each left out with a message where its data is not given). Run again, a
grid skips what is done: a variant is trained once its train_summary.json exists and
evaluated once its ablation_eval.json does; a variant that was killed resumes from its
last checkpoint. Every variant's config is checked before the first one trains. Results:
DIR/table.md (our rows, then the paper's) and DIR/table.json.
"""
import ast
import importlib.util
import json
import os

from absl import flags
from absl import logging
import jax

from hierre_jax.common import cli
from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import locations
from hierre_jax.evaluators import published
from hierre_jax.common import sealed
from hierre_jax import train
from hierre_jax.evaluators import suite
from hierre_jax.evaluators import tables
from hierre_jax.radial import config as re_config
from hierre_jax.trainer import checks
from hierre_jax.trainer import loop
from hierre_jax.trainer import workdir_lock

TABLE3 = ("method", "root_mean", "root_origin", "root_pretrained", "root_only", "no_pullback",
          "three_tiers", "no_negatives", "clip_objective", "from_scratch")
TABLE5 = ("ec_margin_1", "ec_margin_2", "ec_margin_3", "ec_margin_4", "method")
# Grid name -> (scale, variants). The CPU grids leave out the rows that make no sense from
# a random initialisation (their config files say why).
GRIDS = {
    "table3": ("full", TABLE3),
    "table5": ("full", TABLE5),
    "table3_cpu": ("cpu", ("method", "root_mean", "root_origin", "root_pretrained",
                           "root_only", "three_tiers", "no_negatives")),
    "table5_cpu": ("cpu", TABLE5),
}



FLAGS = flags.FLAGS


def define_flags():
  """The entry point's flags (defined only when run, so that importing this module next to
  `hierre_jax.evaluate`, which defines the same data flags, works)."""
  flags.DEFINE_list("grid", None, f"Grids to run, any of {', '.join(GRIDS)}.")
  flags.DEFINE_string("workdir", None, "Where every variant trains (DIR/<variant>) and the "
                      "tables go.")
  flags.DEFINE_list("variants", [], "Run only these variants of the grids (default: all).")
  flags.DEFINE_string("config_dir", "configs/ablations", "Folder of the variants' config "
                      "files.")
  flags.DEFINE_string("base_config", "", "A config file whose get_config() every variant's "
                      "apply(config) changes, in place of the grid scale's base.")
  flags.DEFINE_multi_string("override", [], "key=value set in every variant's config (e.g. "
                            "train_images_dir=/data/images, total_steps=100); repeatable.")
  flags.DEFINE_list("evals", ["hierarcaps", "hyperlex", "breeds", "coco"], "Suite evaluations "
                    f"(any of {', '.join(suite.NAMES)}); those whose data is missing are left "
                    "out.")
  suite.define_data_flags()
  flags.adopt_module_key_flags(suite)
  flags.mark_flags_as_required(["grid", "workdir"])


def load_module(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such config file")
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def apply_overrides(config, overrides):
  """'key=value' strings (dotted keys; values as Python literals, else strings) -> config."""
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise errors.ConfigError(f"--override={item!r}: expected key=value")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    try:
      config.update_from_flattened_dict({key: value})
    except (KeyError, AttributeError) as e:
      raise errors.ConfigError(f"--override={item!r}: no config key {key!r}") from e


def variant_config(variant, scale, workdir, config_dir, base_config="", overrides=()):
  """The config of one grid row, training in workdir/<variant> without in-run evaluation."""
  module = load_module(os.path.join(config_dir, variant + ".py"))
  if base_config:
    config = load_module(base_config).get_config()
    module.apply(config)
  else:
    config = module.get_config(scale)
  apply_overrides(config, overrides)
  config.workdir = os.path.join(workdir, variant)
  config.export_dir = ""
  config.eval.update(at_start=False, at_end=False, every_steps=0)  # the grid evaluates
  return config


def check_config(config):
  """What train_and_export checks before writing anything, for every variant up front."""
  train.check_inputs(config)
  summary = os.path.join(config.workdir, "train_summary.json")
  if os.path.exists(summary):  # a finished variant must have been trained with this config
    with open(summary) as f:
      checks.check_resume(config.workdir, config, json.load(f)["steps"], re_config.RESUME_RULES,
                          record=False)


def available_evaluators(names, paths, options):
  """-> (evaluators whose data is there, {name: why left out}); `options` as `suite.build`'s."""
  evaluators, left_out = [], {}
  for name in names:
    try:
      evaluators += suite.build([name], paths, options)
    except (FileNotFoundError, errors.DataError, ImportError) as e:
      left_out[name] = str(e).strip().replace("\n", " ")
  return evaluators, left_out


EVAL_FILE, EVAL_SEAL = "ablation_eval.json", "ablation_eval.sealed.json"


def evaluate_variant(workdir, evaluators, image_caches):
  """Suite metrics of a trained variant's final checkpoint, kept in ablation_eval.json.

  `image_caches`: {(image tower fingerprint, preprocessing): {path: features}}, shared
  across variants (their image towers are frozen: one embedding per image per grid).
  """
  path = os.path.join(workdir, EVAL_FILE)
  names = [e.name for e in evaluators]
  if os.path.exists(path):
    try:
      sealed.verify(workdir, EVAL_SEAL)
      with open(path) as f:
        stored = json.load(f)
      if stored["evaluations"] == names:
        return stored
    except sealed.DamagedError as e:
      logging.warning("%s; evaluating %s again", str(e).splitlines()[0], workdir)
  model = loading.load(workdir)
  key = (embedding.image_tower_fingerprint(model), model.preprocessing)
  embedder = embedding.Embedder(model, image_features=image_caches.setdefault(key, {}))
  result = {"evaluations": names, "checkpoint_step": model.checkpoint_step,
            **suite.evaluate(embedder, evaluators)}
  loop.write_json(path + ".tmp", result)
  os.replace(path + ".tmp", path)  # a kill never leaves half a file
  sealed.seal(workdir, [EVAL_FILE], manifest=EVAL_SEAL)
  return result


def changes(config, base):
  """{key: value} where a variant's config differs from its grid's base (where files go
  left out): what the row changes."""
  diff = checks.changed_keys(checks.config_json(base), checks.config_json(config))
  return {k: new for k, (_, new) in diff.items() if re_config.RESUME_RULES.is_computational(k)}


def markdown(grids, rows):
  """One section per grid: our rows, then the paper's rows of the same variants."""
  sections = []
  for grid in grids:
    ours = [dict(r, model=r["variant"]) for r in rows if r["grid"] == grid]
    papers = [(f"paper: {r['variant']}", published.ABLATIONS[r["variant"]]) for r in ours]
    sections.append(f"## {grid}\n\n" + tables.markdown_table(ours, papers))
  return "\n".join(sections)


def run(grids, workdir, config_dir, evaluators, left_out, base_config="", overrides=(),
        only=()):
  """Trains and evaluates every variant of `grids` (`only` these, if given), skipping what
  is done -> table rows; writes workdir/table.md and workdir/table.json."""
  scales = {GRIDS[g][0] for g in grids}
  if len(scales) > 1:
    raise errors.ConfigError(f"--grid={','.join(grids)} mixes scales {sorted(scales)}: "
                                   "the variants would share DIR/<variant>; use two workdirs")
  scale = scales.pop()
  jobs = [(g, v) for g in grids for v in GRIDS[g][1] if not only or v in only]
  configs = {}
  for _, variant in jobs:  # every config checked before the first variant trains
    if variant not in configs:
      configs[variant] = variant_config(variant, scale, workdir, config_dir, base_config,
                                        overrides)
      check_config(configs[variant])
  base = (load_module(base_config).get_config() if base_config
          else load_module(os.path.join(config_dir, "method.py")).get_config(scale))
  apply_overrides(base, overrides)
  rows, image_caches = [], {}
  for i, (grid, variant) in enumerate(jobs, start=1):
    config = configs[variant]
    done = os.path.exists(os.path.join(config.workdir, "train_summary.json"))
    print(f"[{i}/{len(jobs)}] {grid} {variant}: " + ("trained" if done else "training"),
          flush=True)
    if not done:
      train.train_and_export(config)
    result = evaluate_variant(config.workdir, evaluators, image_caches)
    print(f"[{i}/{len(jobs)}] {grid} {variant}: evaluated at step {result['checkpoint_step']}: "
          + loop.format_metrics({k: v for k, v in result.items()
                                 if isinstance(v, float) and "/num_" not in k}), flush=True)
    rows.append({"grid": grid, "variant": variant, "changes": changes(config, base),
                 **{k: v for k, v in result.items() if k != "evaluations"}})
  table = {"grids": list(grids), "evaluations": [e.name for e in evaluators],
           "left_out_evaluations": left_out, "rows": rows,
           "published": {r["variant"]: published.ABLATIONS[r["variant"]] for r in rows}}
  loop.write_json(os.path.join(workdir, "table.json"), table)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(markdown(grids, rows))
  return rows


def main(argv):
  del argv
  unknown = [g for g in FLAGS.grid if g not in GRIDS]
  if unknown:
    raise errors.ConfigError(f"--grid: unknown {unknown}; use any of {', '.join(GRIDS)}")
  jax.config.update("jax_default_matmul_precision", "highest")
  errors.require_writable_dir(FLAGS.workdir, "grid workdir")
  paths = suite.paths_from_flags()
  data = [("--data_dir", FLAGS.data_dir)] + [(f"--{k}", v) for k, v in paths.items()
                                             if FLAGS[k].present]
  locations.check_apart([("--workdir", FLAGS.workdir)], data)
  evaluators, left_out = available_evaluators(FLAGS.evals, paths, suite.options_from_flags())
  for name, why in left_out.items():
    print(f"evaluation {name} left out: {why}")
  with workdir_lock.WorkdirLock(FLAGS.workdir):  # one grid runner at a time
    run(FLAGS.grid, FLAGS.workdir, FLAGS.config_dir, evaluators, left_out, FLAGS.base_config,
        FLAGS.override, FLAGS.variants)
  print(open(os.path.join(FLAGS.workdir, "table.md")).read())


if __name__ == "__main__":
  define_flags()
  cli.run(main)
