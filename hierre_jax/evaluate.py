"""The evaluation suite over one or several models, and qualitative hierarchy retrieval.

  python -m hierre_jax.evaluate --model=A [--model=B ...] --evals=hierarcaps,hyperlex,coco \
      --data_dir=../shared --output_dir=OUT [--reference=clip_b32]
  python -m hierre_jax.evaluate --model=A --mode=qualitative --num_images=50

A model is a checkpoint directory of any family (or a hub id), or a `hierre_jax.train` workdir
(its newest orbax checkpoint that verifies). --data_dir is a root laid out like the
project's ../shared; a flag per file overrides it. Models are loaded and embedded one after
another, any families. The suite writes OUT/results.json (one object per model),
OUT/results.md (a Table-1-shaped table, the paper's rows of each --reference under ours) and
OUT/results.png (HierarCaps tau_d against recall, a point per model). By default OUT is
<workdir>/evaluations for one train workdir, else eval_results/<model> (or
eval_results/<model A>__vs__<model B> for several, a long name cut and ended by a digest;
OUT/models.json lists them) under the current directory: never inside a model directory,
which may be uploaded as it is, nor on any input, nor in a folder holding another
evaluation's files (refused before any compute). A train workdir's image features are read
from and added to its store (<workdir>/image_features; --image_features_dir, apart from the
inputs).

Every model is loaded and checked (weights finite, tokenizer and preprocessing files
present) before the first is embedded, and the results are written after each model: a
failure or a kill loses no finished model, and the same command run again computes only
what OUT/results.json lacks (a model's missing evaluations, or all of them for a train
workdir trained on since); results of other settings (tau_d ties, data files, dtype, ...)
are refused, never mixed. The same model twice is refused.

Beside the models, the tables carry baselines: the length baselines of each family's
tokenizer (docs/evaluation_suite.md) and, unless --norandom_baseline, the row of
random:M, the first model M of each family with its weights drawn afresh (same sizes,
tokenizer and preprocessing; `loading.RANDOM`).
"""
import functools
import hashlib
import json
import os

from absl import flags
import jax

from hierre_jax.common import cli
from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import locations
from hierre_jax.evaluators import published
from hierre_jax.common import sealed
from hierre_jax.data import hierarcaps_csv
from hierre_jax.evaluators import hierarcaps
from hierre_jax.evaluators import results_files
from hierre_jax.evaluators import suite
from hierre_jax.radial import report

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("model", None, "A model directory of any family or hub id, or a "
                          "hierre_jax.train workdir, or random:PATH (PATH's family and sizes, "
                          "weights drawn afresh); repeat for several models.")
flags.DEFINE_bool("random_baseline", True, "Also evaluate random:M for the first model M of "
                  "each family (the same family and sizes, random weights, seed 0) as a "
                  "baseline row.")
flags.DEFINE_enum("mode", "suite", ["suite", "qualitative"], "What to run.")
flags.DEFINE_list("evals", ["hierarcaps"], f"Suite evaluations, any of {', '.join(suite.NAMES)}.")
flags.register_validator("evals", lambda names: set(names) <= set(suite.NAMES),
                         f"--evals: use names of {', '.join(suite.NAMES)}")
suite.define_data_flags()
flags.adopt_module_key_flags(suite)  # --help lists the data flags too
flags.DEFINE_list("reference", [], "Add the paper's published rows of these models "
                  f"({', '.join(published.SUITE)}) to results.md and results.png.")
flags.register_validator("reference", lambda names: set(names) <= set(published.SUITE),
                         f"--reference: use names of {', '.join(published.SUITE)}")
flags.DEFINE_string("candidates_csv", "", "Qualitative candidates. Default: "
                    "<data_dir>/hierarcaps/hierarcaps_test_expanded.csv.gz.")
flags.DEFINE_list("images", [], "Qualitative: image file names (default: first --num_images "
                  "images of the test set).")
flags.DEFINE_integer("num_images", 20, "Qualitative: how many test images when --images is empty.")
flags.DEFINE_enum("qualitative_radius", "auto", ["auto", "cosine", "euclidean", "geodesic"],
                  "Qualitative levels evenly spaced in: on the sphere 1 - <t, r> (cosine, the "
                  "release's chains) or ||t - r|| (euclidean); on the hyperboloid the geodesic "
                  "distance to the root; auto: the model's (cosine on the sphere).")
flags.DEFINE_enum("qualitative_chains", "levels", list(hierarcaps.CHAIN_PROCEDURES),
                  "Qualitative chains: RE's radius levels, or MERU's traversal (a hyperbolic "
                  "model; FAMILIES_SPEC 1.4).")
flags.DEFINE_string("reference_model", "", "Qualitative: compare the chains with this model's "
                    "in <data_dir>/hierarcaps/reference_qualitative_predictions.json (e.g. "
                    "clip_vit_b32_re_finetuned), a regression check for real weights.")
flags.DEFINE_integer("text_batch_size", 256, "Texts per batch.")
flags.DEFINE_bool("pack_texts", True, "Embed texts packed several to a row, as the train "
                  "step does (no work on padding, one compiled shape); --nopack_texts pads "
                  "each batch (--text_length_multiple).")
flags.DEFINE_integer("text_length_multiple", 8, "With --nopack_texts: pad text batches to a "
                     "multiple of this; the family's maximum (77 for CLIP) gives one static "
                     "shape (one compilation).")
flags.DEFINE_integer("image_batch_size", 64, "Images per batch.")
flags.DEFINE_enum("hyperbolic_root", "origin", ["origin", "empty_string"], "The root of a "
                  "hyperbolic model (MERU): the origin, with MERU's distances and angles, or "
                  "the embedding of \"\" as RE roots a model (MERU's traversal then walks to it); "
                  "recorded in the results.")
flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "The towers' compute "
                  "dtype: bfloat16 is mixed precision (float32 parameters).")
flags.DEFINE_integer("image_workers", 0, "Threads decoding images ahead of the device "
                     "(0: one per CPU; 1: one at a time).")
flags.DEFINE_enum("matmul_precision", "highest", ["highest", "high", "default"],
                  "fp32 matmul precision on GPU/TPU: highest matches PyTorch fp32; default "
                  "allows TF32 / bf16 passes.")
flags.DEFINE_string("output_dir", "", "Where results go (see the module docstring).")
cli.define_image_features_flag()


def distinct_models(models):
  """`models` as given, each once: the same model twice (spelt alike or not, a trailing slash)
  is refused in one line naming both."""
  seen = {}
  for m in models:
    key = locations.canonical(m)
    if key in seen:
      raise errors.UserError(f"--model={m} names the same model as --model={seen[key]}: give "
                             "each model once")
    seen[key] = m
  return list(models)


def default_name(models):
  """eval_results/<name> of these models: their paths with / as __, joined by __vs__; past
  NAME_BYTES cut and ended by a digest of the full list (models.json inside names them
  all)."""
  short = lambda m: os.path.normpath(m).strip("./").replace("/", "__") or "model"
  name = "__vs__".join(short(m) for m in models)
  if len(name.encode()) <= NAME_BYTES:
    return name
  digest = hashlib.sha256("\n".join(owner(models)["models"]).encode()).hexdigest()[:12]
  return f"{name.encode()[:NAME_BYTES - 30].decode(errors='ignore')}__{len(models)}models_{digest}"


NAME_BYTES = 120  # a default output folder's name (file systems allow 255)


def output_dir(models, paths):
  """Where results go (the module docstring), checked before any compute: writable, apart
  from every input (a train workdir's own evaluations/ apart), and new, empty or an earlier
  evaluation of the same models, in any order (`locations.claim`); --image_features_dir
  apart from the inputs too (a train workdir's own store apart)."""
  workdirs = [m for m in models if loading.is_train_workdir(m)]
  if FLAGS.output_dir:
    out = FLAGS.output_dir
  elif len(models) == 1 and workdirs:
    out = os.path.join(models[0], "evaluations")
  else:
    out = os.path.join("eval_results", default_name(models))
  inputs = [("--model", m) for m in models] + [(f"--{k}", v) for k, v in paths.items()
                                               if k in FLAGS and FLAGS[k].present]
  inputs += [("--data_dir", FLAGS.data_dir), ("--traversal_root", FLAGS.traversal_root)]
  errors.require_writable_dir(out, "output folder")
  locations.check_apart([("--output_dir", out)], inputs,
                        allowed=[os.path.join(w, "evaluations") for w in workdirs])
  if FLAGS.image_features_dir:
    errors.require_writable_dir(FLAGS.image_features_dir, "image feature folder")
    locations.check_apart([("--image_features_dir", FLAGS.image_features_dir)],
                          inputs + [("--output_dir", out)], allowed=[
                              os.path.join(w, embedding.IMAGE_FEATURES) for w in workdirs])
  locations.check_claimable(out, folder_owner(out, models), "--output_dir")
  return out


def owner(models):
  """The owner record of an evaluation's output folder (`locations.claim`): the models in
  sorted order, so that the same models in another order are the same evaluation."""
  return {"writer": "hierre_jax.evaluate",
          "models": sorted(locations.canonical(m) for m in models)}


def folder_owner(out, models):
  """owner(models), or the record already in `out` where it names the same models in
  another order (written before records were sorted)."""
  found, wanted = locations.owner_of(out), owner(models)
  if (isinstance(found, dict) and found.get("writer") == wanted["writer"]
      and sorted(found.get("models") or []) == wanted["models"]):
    return found
  return wanted


def settings(paths):
  """What the numbers depend on besides the model: a rerun into the same folder keeps
  earlier results only where these are the same."""
  real = lambda p: locations.real(p) if p and os.path.exists(p) else p
  return {"tau_d_ties": FLAGS.tau_d_ties, "hyperbolic_root": FLAGS.hyperbolic_root,
          **({"traversal_root": real(FLAGS.traversal_root)} if FLAGS.traversal_root else {}),
          "compute_dtype": FLAGS.compute_dtype, "matmul_precision": FLAGS.matmul_precision,
          "allow_missing_images": FLAGS.allow_missing_images, "min_images": FLAGS.min_images,
          "data": {k: real(v) for k, v in sorted(paths.items())}}


def earlier_results(out, models, wanted):
  """{model: result} of an earlier run into `out` (its results.json), refused in one line
  where it was computed with other settings (nothing is dropped or mixed)."""
  found = {locations.canonical(r["model"]): r for r in results_files.read_results(out)}
  for model, result in found.items():
    differences = (sealed.record_differences(result["settings"], wanted)
                   if isinstance(result.get("settings"), dict)
                   else ["written before settings were recorded"])
    if differences:
      raise errors.UserError(
          f"{os.path.join(out, 'results.json')}: {model}'s results were computed with other "
          f"settings ({'; '.join(differences[:3])}): choose another --output_dir, or run with "
          "the same settings (nothing was computed)")
  return {m: found[locations.canonical(m)] for m in models if locations.canonical(m) in found}


def embedder_of(model):
  return loading.embedder(model, FLAGS.image_features_dir,
                          text_batch_size=FLAGS.text_batch_size,
                          image_batch_size=FLAGS.image_batch_size,
                          length_multiple=FLAGS.text_length_multiple,
                          pack_texts=FLAGS.pack_texts, image_workers=FLAGS.image_workers,
                          compute_dtype=FLAGS.compute_dtype,
                          hyperbolic_root=FLAGS.hyperbolic_root)


def verify_models(models):
  """Every model loaded whole and checked (`loading.verify`) before the first is embedded
  -> {model: checkpoint step}; says where --hyperbolic_root does not apply."""
  steps = {}
  for i, model in enumerate(models):
    print(f"[check {i + 1}/{len(models)}] {model}", flush=True)
    steps[model], geometry, own_root = loading.verify(model)
    asked = FLAGS["hyperbolic_root"]
    if (asked.present or asked.value != asked.default) and (geometry == "sphere" or own_root):
      print(f"note: --hyperbolic_root={FLAGS.hyperbolic_root} not used for {model}: "
            + ("it lives on the sphere, rooted at the embedding of \"\"" if geometry == "sphere"
               else "it has its own root"), flush=True)
  return steps


def random_baselines(models, families):
  """random:M for the first model M of each family among `models` ({model: family name or
  None}), unless random:M is among them already."""
  given = {locations.canonical(loading.random_source(m)) for m in models
           if loading.random_source(m) is not None}
  out, seen = [], set()
  for m in models:
    family = families[m] or m  # a hub id's family is known once it is loaded
    if loading.random_source(m) is None and family not in seen:
      seen.add(family)
      if locations.canonical(m) not in given:
        out.append(loading.RANDOM + m)
  return out


def run_suite(paths):
  models = distinct_models(FLAGS.model)
  # a missing path or an unknown family: before any loading
  families = {model: loading.check(model) for model in models}
  out = output_dir(models, paths)
  given = models  # the output folder's owner: the models asked for (baselines are rows)
  if FLAGS.random_baseline:
    models = models + random_baselines(models, families)
  evaluators = suite.build(FLAGS.evals, paths, suite.options_from_flags())
  wanted = settings(paths)
  previous = earlier_results(out, models, wanted)
  steps = verify_models(models)
  locations.claim(out, folder_owner(out, given), "--output_dir")
  locations.write_file(os.path.join(out, "models.json"),
                   lambda f: json.dump({"models": models}, f, indent=1))
  save = lambda results: results_files.write(results, out, FLAGS.reference)
  results = suite.run({m: functools.partial(embedder_of, m) for m in models}, evaluators,
                      previous, steps, {"settings": wanted}, save)
  json_path, md_path = save(results)
  print(open(md_path).read())
  print(f"wrote {json_path} and {md_path}")


def reference_chains(hierarcaps_dir):
  """The --reference_model's chains in the data's reference_qualitative_predictions.json,
  read before any compute (None without the flag); an unknown name refused in one line."""
  if not FLAGS.reference_model:
    return None
  path = errors.require_file(os.path.join(hierarcaps_dir, "reference_qualitative_predictions"
                                          ".json"), "reference predictions file")
  with open(path) as f:
    known = json.load(f)["models"]
  if FLAGS.reference_model not in known:
    raise errors.UserError(f"--reference_model={FLAGS.reference_model}: not in {path}; use one "
                           f"of {', '.join(known)}")
  return known[FLAGS.reference_model]


def run_qualitative(paths):
  if len(FLAGS.model) > 1:
    raise errors.UserError(f"--mode=qualitative takes one --model ({len(FLAGS.model)} given): "
                           "run it once per model")
  model = FLAGS.model[0]
  out_dir = output_dir([model], paths)
  reference = reference_chains(os.path.join(FLAGS.data_dir, "hierarcaps"))
  embedder = embedder_of(model)
  step = embedder.checkpoint_step
  images_dir = paths["hierarcaps_images"]
  names = (FLAGS.images or
           hierarcaps_csv.read_hierarchies(paths["hierarcaps_test_csv"]).images[:FLAGS.num_images])
  hierarcaps_dir = os.path.join(FLAGS.data_dir, "hierarcaps")
  chains = hierarcaps.qualitative(
      embedder, FLAGS.candidates_csv or os.path.join(hierarcaps_dir,
                                                     "hierarcaps_test_expanded.csv.gz"),
      images_dir, names, radius=None if FLAGS.qualitative_radius == "auto"
      else FLAGS.qualitative_radius, procedure=FLAGS.qualitative_chains)
  locations.claim(out_dir, owner([model]), "--output_dir")
  out = os.path.join(out_dir, "qualitative" + ("" if step is None else f"_step_{step}"))
  report.write_all(chains, images_dir, out,
                   title=model + ("" if step is None else f" (checkpoint step {step})"))
  print(f"wrote {out}.json/.csv/.html for {len(chains)} images")
  if reference is not None:
    agreement = hierarcaps.chain_agreement(hierarcaps.published_form(chains), reference)
    with open(out + "_vs_reference.json", "w") as f:
      json.dump({"model": model, "checkpoint_step": step,
                 "reference_model": FLAGS.reference_model, **agreement}, f, indent=1)
    print(json.dumps(agreement, indent=1))


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", FLAGS.matmul_precision)
  (run_suite if FLAGS.mode == "suite" else run_qualitative)(suite.paths_from_flags())


if __name__ == "__main__":
  flags.mark_flags_as_required(["model"])
  cli.run(main, full_disk_advice="run the same command again: the models whose results were "
          "written are not computed again")
