"""The evaluation suite: evaluators by name, read from a data root laid out like the
project's `../shared` (each path overridable), run over several models, each metric with
its interval (`uncertainty`); the files are `results_files`', the tables `tables`'.
"""
from absl import flags

from hierre_jax.common import config_values
from hierre_jax.common import errors
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import tables
from hierre_jax.evaluators import uncertainty

NAMES = tuple(registry.ENTRIES)


default_paths = registry.default_paths  # {path key: path under a data root like ../shared}


def build(names, paths, options=None):
  """Evaluators for `names` (registered names; an unknown one refused in one line), reading
  `paths` (as default_paths), with `options` ({name: value} of the evaluators' declared
  `registry.Option`s; the others at their defaults)."""
  values = registry.option_values(options)
  return [entry.build(paths, values) for entry in registry.lookup(names)]


# Evaluations a training run can list in config.eval.suite (its HierarCaps evaluation is
# config.eval.test_csv, with the held-out angles).
IN_RUN = tuple(name for name, entry in registry.ENTRIES.items() if entry.in_run)


def in_run_path_keys():
  """{file key: ''} of the IN_RUN evaluations: config.eval.paths ('': under data_dir)."""
  return {key: "" for name in IN_RUN for key in registry.ENTRIES[name].files}


def from_config(eval_config):
  """The evaluators a train config's `eval.suite` names (comma-separated), reading
  `eval.data_dir` with the files of `eval.paths` that are set, with the evaluators' options
  `eval` sets (e.g. allow_missing_images, min_images; the others at their defaults)."""
  names = [n.strip() for n in eval_config.suite.split(",") if n.strip()]
  unknown = [n for n in names if n not in IN_RUN]
  if unknown:
    raise errors.ConfigError(
        f"config.eval.suite={eval_config.suite!r}: {', '.join(unknown)} cannot run in "
        f"training; use any of {', '.join(IN_RUN)} (HierarCaps runs from config.eval.test_csv)")
  paths = default_paths(eval_config.data_dir)
  paths.update({k: v for k, v in eval_config.paths.items() if v})
  return build(names, paths, {k: eval_config[k] for k in registry.options() if k in eval_config})


DEFINE = {"string": flags.DEFINE_string, "bool": flags.DEFINE_bool,
          "integer": flags.DEFINE_integer}


def define_data_flags():
  """--data_dir, a flag per file of default_paths and one per option the evaluators declare
  (`registry.Option`): the data flags of the entry points that run the suite."""
  flags.DEFINE_string("data_dir", "../shared", "Data root laid out like the project's ../shared.")
  for key, path in default_paths("<data_dir>").items():
    flags.DEFINE_string(key, "", f"Default: {path}.")
  for option in registry.options().values():
    if isinstance(option.kind, tuple):
      flags.DEFINE_enum(option.name, option.default, list(option.kind), option.help)
    else:
      DEFINE[option.kind](option.name, option.default, option.help)


def options_from_flags():
  """{name: value} of the evaluators' options as the command line set them."""
  return {name: flags.FLAGS[name].value for name in registry.options()}


def paths_from_flags():
  """default_paths of --data_dir, with the per-file flags that are set."""
  return {k: flags.FLAGS[k].value or v for k, v in default_paths(flags.FLAGS.data_dir).items()}


def evaluate(embedder, evaluators):
  """-> {'<benchmark>/<metric>': value} of one model over `evaluators`, with
  '<metric>_ci95': [lo, hi] where the evaluator gives the metric's items."""
  return evaluate_items(embedder, evaluators)[0]


def evaluate_items(embedder, evaluators):
  """-> (`evaluate`'s metrics, {'<benchmark>/<metric>': uncertainty.Items}) of one model."""
  out, items = {}, {}
  for evaluator in evaluators:
    metrics, found = uncertainty.with_intervals(evaluator.run(embedder))
    out.update(config_values.flatten(metrics, f"{evaluator.name}/", "/"))
    items.update({f"{evaluator.name}/{k}": v for k, v in found.items()})
  return out, items


def run(embedders, evaluators, previous=None, steps=None, header=None, save=None):
  """{model name: Embedder, or a function () -> Embedder} -> list of result dicts, one per
  model, each with "items" ({metric: uncertainty.Items}, for intervals and paired
  differences). Models given as functions are loaded one after another (one model's towers
  and features in memory at a time), each announced on a progress line.

  previous: {model name: result dict} of an earlier run (the same settings): its metrics are
  kept and only the evaluators it lacks run; none when its checkpoint step differs from
  `steps` {model name: step} (a train workdir trained on: evaluated again). header: {key:
  value} put in every new result (the settings). save: called with the results so far after
  each model, so that a failure or a kill loses no finished model.
  """
  previous, steps, results = previous or {}, steps or {}, []
  for i, (model, embedder) in enumerate(embedders.items()):
    prev = previous.get(model)
    if prev is not None and model in steps and prev.get("checkpoint_step") != steps[model]:
      print(f"[model {i + 1}/{len(embedders)}] {model}: checkpoint step {steps[model]}, its "
            f"results are of step {prev.get('checkpoint_step')}: evaluated again", flush=True)
      prev = None
    todo = [e for e in evaluators if not tables.has_results(prev or {}, e.name)]
    if not todo:
      print(f"[model {i + 1}/{len(embedders)}] {model}: every result already written", flush=True)
      results.append({**prev, "model": model})
      continue
    if callable(embedder):
      print(f"[model {i + 1}/{len(embedders)}] {model}", flush=True)
      embedder = embedder()
    metrics, items = evaluate_items(embedder, todo)
    prev = prev or {}
    results.append({**prev, "model": model, "family": embedder.model.family.name,
                    "checkpoint_step": embedder.checkpoint_step, "root": embedder.root_source,
                    **(header or {}), **metrics, "items": {**prev.get("items", {}), **items}})
    del embedder
    if save is not None:
      save(results + [previous[m] for m in list(embedders)[i + 1:] if m in previous])
  return results
