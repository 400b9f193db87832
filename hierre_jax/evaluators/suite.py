"""The evaluation suite: evaluators by name, read from a data root laid out like the
project's `../shared` (each path overridable), run over several models; results as
`results.json` (one object per model, metrics named `<benchmark>/<metric>`) and a
Table-1-shaped `results.md` with the paper's published rows beside ours.
"""
import json
import os

from absl import flags

from hierre_jax import config_values
from hierre_jax import errors
from hierre_jax import locations
from hierre_jax import published
from hierre_jax.evaluators import plot
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import retrieval

NAMES = tuple(registry.ENTRIES)


default_paths = registry.default_paths  # {path key: path under a data root like ../shared}


def build(names, paths, allow_missing_images=False, tau_d_ties="release", tfds_data_dir=None,
          min_images=retrieval.MIN_IMAGES):
  """Evaluators for `names` (registered names; an unknown one refused in one line), reading
  `paths` (as default_paths); CIFAR from tensorflow-datasets in `tfds_data_dir` (None:
  tfds' default); retrieval on fewer than all images of its annotations
  (`allow_missing_images`) on `min_images` at least."""
  options = registry.Options(allow_missing_images, min_images, tau_d_ties, tfds_data_dir)
  return [entry.build(paths, options) for entry in registry.lookup(names)]


# Evaluations a training run can list in config.eval.suite (its HierarCaps evaluation is
# config.eval.test_csv, with the held-out angles).
IN_RUN = tuple(name for name, entry in registry.ENTRIES.items() if entry.in_run)


def in_run_path_keys():
  """{file key: ''} of the IN_RUN evaluations: config.eval.paths ('': under data_dir)."""
  return {key: "" for name in IN_RUN for key in registry.ENTRIES[name].files}


def from_config(eval_config):
  """The evaluators a train config's `eval.suite` names (comma-separated), reading
  `eval.data_dir` with the files of `eval.paths` that are set."""
  names = [n.strip() for n in eval_config.suite.split(",") if n.strip()]
  unknown = [n for n in names if n not in IN_RUN]
  if unknown:
    raise errors.ConfigError(
        f"config.eval.suite={eval_config.suite!r}: {', '.join(unknown)} cannot run in "
        f"training; use any of {', '.join(IN_RUN)} (HierarCaps runs from config.eval.test_csv)")
  paths = default_paths(eval_config.data_dir)
  paths.update({k: v for k, v in eval_config.paths.items() if v})
  return build(names, paths, eval_config.allow_missing_images,
               min_images=eval_config.get("min_images", retrieval.MIN_IMAGES))


def define_data_flags():
  """--data_dir, a flag per file of default_paths, --allow_missing_images and
  --tfds_data_dir: the data flags of the entry points that run the suite."""
  flags.DEFINE_string("data_dir", "../shared", "Data root laid out like the project's ../shared.")
  for key, path in default_paths("<data_dir>").items():
    flags.DEFINE_string(key, "", f"Default: {path}.")
  flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data directory for CIFAR "
                      "(default: tfds' own, ~/tensorflow_datasets).")
  flags.DEFINE_bool("allow_missing_images", False, "Retrieval: evaluate on the images present "
                    "when the directory holds only part of the annotations' images (the result "
                    "records how many were used).")
  flags.DEFINE_integer("min_images", retrieval.MIN_IMAGES, "Retrieval with "
                       "--allow_missing_images: refuse fewer images than this.")


def paths_from_flags():
  """default_paths of --data_dir, with the per-file flags that are set."""
  return {k: flags.FLAGS[k].value or v for k, v in default_paths(flags.FLAGS.data_dir).items()}


def evaluate(embedder, evaluators):
  """-> {'<benchmark>/<metric>': value} of one model over `evaluators`."""
  out = {}
  for evaluator in evaluators:
    out.update(config_values.flatten(evaluator.run(embedder), f"{evaluator.name}/", "/"))
  return out


def has_results(result, evaluator_name):
  """Whether a result dict holds the metrics of the evaluator named `evaluator_name`."""
  return any(k.startswith(f"{evaluator_name}/") for k in result or {})


def run(embedders, evaluators, previous=None, steps=None, header=None, save=None):
  """{model name: Embedder, or a function () -> Embedder} -> list of result dicts, one per
  model. Models given as functions are loaded one after another (one model's towers and
  features in memory at a time), each announced on a progress line.

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
    todo = [e for e in evaluators if not has_results(prev, e.name)]
    if not todo:
      print(f"[model {i + 1}/{len(embedders)}] {model}: every result already written", flush=True)
      results.append({**prev, "model": model})
      continue
    if callable(embedder):
      print(f"[model {i + 1}/{len(embedders)}] {model}", flush=True)
      embedder = embedder()
    results.append({**(prev or {}), "model": model, "family": embedder.model.family.name,
                    "checkpoint_step": embedder.checkpoint_step, "root": embedder.root_source,
                    **(header or {}), **evaluate(embedder, todo)})
    del embedder
    if save is not None:
      save(results + [previous[m] for m in list(embedders)[i + 1:] if m in previous])
  return results


# (column title, metric key) of the Table-1-shaped summary, in registration order.
TABLE = tuple(column for entry in registry.ENTRIES.values() for column in entry.columns)



def item_count(result, key):
  """'n' or 'n of N': how many items metric `key` of a result was computed over (N: how many
  its data names, where fewer were present); '' when the result records none."""
  benchmark = key.split("/")[0]
  if benchmark == "hyperlex":
    n = result.get("hyperlex/num_noun_pairs" if key.endswith("nouns") else "hyperlex/num_pairs")
  elif benchmark == "breeds":
    n = sum(v for k, v in result.items() if k.startswith("breeds/") and k.endswith("/num_images"))
  else:
    n = result.get(f"{benchmark}/num_images")
  annotated = result.get(f"{benchmark}/num_annotated_images")
  if not n:
    return ""
  return f"{n} of {annotated}" if annotated and annotated != n else f"{n}"


COUNT_LEGEND = ("n: the items each number was computed over (HyperLex: word pairs; the others: "
                "images), 'of N' where only part of the benchmark's images were present")


def markdown_table(results, papers=()):
  """One row per model, then one per (name, metrics) pair of `papers`; the columns of
  TABLE that any row has, of the benchmarks our rows evaluated (a published number of a
  benchmark not evaluated is left out; MERU's traversal P/R stay beside sphere models).
  Our cells show the item count behind each number (`item_count`)."""
  papers = list(papers)
  rows = [(r["model"], r) for r in results] + papers
  evaluated = lambda key: any(has_results(r, key.split("/")[0]) for r in results)
  columns = [(title, key) for title, key in TABLE
             if any(key in r for _, r in rows) and evaluated(key)]
  def cell(r, key):
    if not isinstance(r.get(key), (int, float)):
      return ""
    n = item_count(r, key)
    return f"{r[key]:.3f}" + (f" (n={n})" if n else "")
  lines = ["| model | " + " | ".join(t for t, _ in columns) + " |",
           "| --- |" + " --- |" * len(columns)]
  lines += [f"| {name} | " + " | ".join(cell(r, k) for _, k in columns) + " |"
            for name, r in rows]
  return "\n".join(lines) + "\n\n" + COUNT_LEGEND + "\n"


def read_results(output_dir):
  """The result dicts of output_dir/results.json ([] where there is none); a file that does
  not parse as a list of results is refused, naming it."""
  path = os.path.join(output_dir, "results.json")
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      results = json.load(f)
    if not (isinstance(results, list) and all(isinstance(r, dict) and "model" in r
                                              for r in results)):
      raise ValueError("not a list of results with a model each")
  except (OSError, ValueError) as e:
    raise errors.DataError(f"{path}: unreadable results ({e}); move it away or choose another "
                           "--output_dir") from e
  return results


def write(results, output_dir, references=()):
  """-> paths of results.json and results.md in `output_dir`, with the published rows of
  each of `references` (keys of published.SUITE; a string: one) under ours; and
  results.png (`plot.tau_d_against_recall`), drawn anew from `results` whenever HierarCaps
  was evaluated (an earlier one removed when it is not). Each file is replaced whole."""
  references = [references] if isinstance(references, str) else list(references)
  unknown = [r for r in references if r and r not in published.SUITE]
  if unknown:
    raise ValueError(f"reference {unknown[0]!r}: use one of {', '.join(published.SUITE)}")
  papers = dict(row for r in references if r for row in published.SUITE[r].items())
  os.makedirs(output_dir, exist_ok=True)
  json_path = locations.write_file(os.path.join(output_dir, "results.json"),
                         lambda f: json.dump(results, f, indent=1))
  md_path = locations.write_file(os.path.join(output_dir, "results.md"),
                       lambda f: f.write(markdown_table(results, papers.items())))
  png = os.path.join(output_dir, "results.png")
  if any("hierarcaps/tau_d" in r for r in results):
    try:
      plot.tau_d_against_recall(results, papers, png)
    except OSError as e:
      raise OSError(e.errno, e.strerror, png) from e
  elif os.path.exists(png):
    os.remove(png)  # no HierarCaps result: a picture of earlier results would be stale
  return json_path, md_path
