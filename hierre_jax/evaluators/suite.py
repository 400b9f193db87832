"""The evaluation suite: evaluators by name, read from a data root laid out like the
project's `../shared` (each path overridable), run over several models; results as
`results.json` (one object per model, metrics named `<benchmark>/<metric>`) and a
Table-1-shaped `results.md` with the paper's published rows beside ours.
"""
import json
import os

from absl import flags

from hierre_jax.evaluators import breeds
from hierre_jax.evaluators import hierarcaps
from hierre_jax.evaluators import hyperlex
from hierre_jax.evaluators import retrieval
from hierre_jax.evaluators import zero_shot
from hierre_jax.trainer import checks

NAMES = ("hierarcaps", "hyperlex", "breeds", "coco", "flickr30k", "cifar10", "cifar100")


def default_paths(data_dir):
  """Where each benchmark's files are under a data root laid out like ../shared."""
  return {
      "hierarcaps_test_csv": os.path.join(data_dir, "hierarcaps", "hierarcaps_test.csv"),
      "hierarcaps_images": os.path.join(data_dir, "hierarcaps", "test_images"),
      "hyperlex": os.path.join(data_dir, "hyperlex", "hyperlex-all.txt"),
      "coco_captions": os.path.join(data_dir, "coco", "captions_val2017.json"),
      "coco_images": os.path.join(data_dir, "coco", "val2017"),
      "flickr30k_json": os.path.join(data_dir, "flickr30k", "dataset_flickr30k.json"),
      "flickr30k_images": os.path.join(data_dir, "flickr30k", "flickr30k-images"),
      "cifar_classnames": os.path.join(data_dir, "classnames", "cifar_classnames_openai.json"),
      "breeds_hierarchies": os.path.join(data_dir, "breeds", "breeds_hierarchies_full.json"),
      "imagenet_classnames": os.path.join(data_dir, "classnames",
                                          "imagenet_classnames_openai.json"),
      "imagenet_val": os.path.join(data_dir, "imagenet", "val"),
  }


def build(names, paths, allow_missing_images=False, tau_d_ties="release", tfds_data_dir=None,
          min_images=retrieval.MIN_IMAGES):
  """Evaluators for `names` (a subset of NAMES), reading `paths` (as default_paths); CIFAR
  from tensorflow-datasets in `tfds_data_dir` (None: tfds' default); retrieval on fewer
  than all images of its annotations (`allow_missing_images`) on `min_images` at least."""
  unknown = sorted(set(names) - set(NAMES))
  if unknown:
    raise ValueError(f"unknown evaluations {unknown}; available: {', '.join(NAMES)}")
  out = []
  for name in names:
    if name == "hierarcaps":
      out.append(hierarcaps.HierarCaps(paths["hierarcaps_test_csv"], paths["hierarcaps_images"],
                                       tau_d_ties))
    elif name == "hyperlex":
      out.append(hyperlex.HyperLex(paths["hyperlex"]))
    elif name == "breeds":
      out.append(breeds.Breeds(paths["breeds_hierarchies"], paths["imagenet_classnames"],
                               paths["imagenet_val"]))
    elif name == "coco":
      out.append(retrieval.Retrieval("coco", retrieval.coco_pairs(paths["coco_captions"]),
                                     paths["coco_images"], allow_missing_images, min_images))
    elif name == "flickr30k":
      out.append(retrieval.Retrieval(
          "flickr30k", retrieval.flickr_pairs(paths["flickr30k_json"]),
          paths["flickr30k_images"], allow_missing_images, min_images))
    else:
      out.append(zero_shot.ZeroShot.cifar(name, paths["cifar_classnames"], tfds_data_dir))
  return out


# Evaluations a training run can list in config.eval.suite (its HierarCaps evaluation is
# config.eval.test_csv, with the held-out angles).
IN_RUN = tuple(n for n in NAMES if n != "hierarcaps")


def in_run_path_keys():
  """{file key: ''} of the IN_RUN evaluations: config.eval.paths ('': under data_dir)."""
  return {k: "" for k in default_paths("") if not k.startswith("hierarcaps")}


def from_config(eval_config):
  """The evaluators a train config's `eval.suite` names (comma-separated), reading
  `eval.data_dir` with the files of `eval.paths` that are set."""
  names = [n.strip() for n in eval_config.suite.split(",") if n.strip()]
  unknown = [n for n in names if n not in IN_RUN]
  if unknown:
    raise checks.ConfigError(
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
    out.update(checks.flatten(evaluator.run(embedder), f"{evaluator.name}/", "/"))
  return out


def run(embedders, evaluators):
  """{model name: Embedder} -> list of result dicts, one per model."""
  return [{"model": model, "checkpoint_step": embedder.checkpoint_step,
           **evaluate(embedder, evaluators)} for model, embedder in embedders.items()]


# (column title, metric key) of the Table-1-shaped summary.
TABLE = (("HierarCaps P", "hierarcaps/precision"), ("R", "hierarcaps/recall"),
         ("tau_d", "hierarcaps/tau_d"), ("HyperLex rho_all", "hyperlex/rho_all"),
         ("rho_nouns", "hyperlex/rho_nouns"), ("BREEDS R@1", "breeds/mean/r@1"),
         ("R@5", "breeds/mean/r@5"), ("COCO T2I R@1", "coco/t2i_r@1"),
         ("R@5", "coco/t2i_r@5"), ("R@10", "coco/t2i_r@10"),
         ("Flickr30K T2I R@1", "flickr30k/t2i_r@1"), ("R@5", "flickr30k/t2i_r@5"),
         ("R@10", "flickr30k/t2i_r@10"), ("CIFAR-10 top-1", "cifar10/top1"),
         ("CIFAR-100 top-1", "cifar100/top1"))

# The paper's published rows (SPEC sections 4 and 5); keys absent were not published.
PUBLISHED = {
    "clip_b32": {
        "paper: CLIP ViT-B/32 zero-shot": {
            "hierarcaps/precision": 0.14, "hierarcaps/recall": 0.36, "hierarcaps/tau_d": 0.89,
            "hyperlex/rho_all": 0.44, "hyperlex/rho_nouns": 0.48, "breeds/mean/r@1": 0.22,
            "breeds/mean/r@5": 0.50, "coco/t2i_r@1": 0.30,
            "coco/t2i_r@5": 0.55, "coco/t2i_r@10": 0.66, "flickr30k/t2i_r@1": 0.59,
            "flickr30k/t2i_r@5": 0.83, "flickr30k/t2i_r@10": 0.90, "cifar10/top1": 0.90,
            "cifar100/top1": 0.66},
        "paper: CLIP ViT-B/32 RE fine-tuned": {
            "hierarcaps/precision": 0.15, "hierarcaps/recall": 0.47, "hierarcaps/tau_d": 0.99,
            "hyperlex/rho_all": 0.51, "hyperlex/rho_nouns": 0.55, "breeds/mean/r@1": 0.24,
            "breeds/mean/r@5": 0.55, "coco/t2i_r@1": 0.31,
            "coco/t2i_r@5": 0.56, "coco/t2i_r@10": 0.67, "flickr30k/t2i_r@1": 0.60,
            "flickr30k/t2i_r@5": 0.84, "flickr30k/t2i_r@10": 0.91, "cifar10/top1": 0.90,
            "cifar100/top1": 0.65}},
    "clip_l14": {
        "paper: CLIP ViT-L/14 zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.37, "hierarcaps/tau_d": 0.88,
            "hyperlex/rho_all": 0.42, "hyperlex/rho_nouns": 0.44, "breeds/mean/r@1": 0.29,
            "breeds/mean/r@5": 0.61},
        "paper: CLIP ViT-L/14 RE fine-tuned": {
            "hierarcaps/precision": 0.15, "hierarcaps/recall": 0.44, "hierarcaps/tau_d": 0.97,
            "hyperlex/rho_all": 0.50, "hyperlex/rho_nouns": 0.54, "breeds/mean/r@1": 0.32,
            "breeds/mean/r@5": 0.65}},
    # Tables 1 and 4 (ALIGN_SPEC section 7): Table 4 repeats Table 1's COCO R@1, R@5 and
    # CIFAR numbers and adds COCO R@10 and Flickr30K.
    "align": {
        "paper: ALIGN zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.36, "hierarcaps/tau_d": 0.89,
            "hyperlex/rho_all": 0.35, "hyperlex/rho_nouns": 0.37, "breeds/mean/r@1": 0.21,
            "breeds/mean/r@5": 0.52, "coco/t2i_r@1": 0.42, "coco/t2i_r@5": 0.67,
            "coco/t2i_r@10": 0.77, "flickr30k/t2i_r@1": 0.74, "flickr30k/t2i_r@5": 0.92,
            "flickr30k/t2i_r@10": 0.96, "cifar10/top1": 0.78, "cifar100/top1": 0.53},
        "paper: ALIGN RE fine-tuned": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.42, "hierarcaps/tau_d": 0.96,
            "hyperlex/rho_all": 0.44, "hyperlex/rho_nouns": 0.47, "breeds/mean/r@1": 0.23,
            "breeds/mean/r@5": 0.58, "coco/t2i_r@1": 0.42, "coco/t2i_r@5": 0.67,
            "coco/t2i_r@10": 0.77, "flickr30k/t2i_r@1": 0.74, "flickr30k/t2i_r@5": 0.92,
            "flickr30k/t2i_r@10": 0.96, "cifar10/top1": 0.78, "cifar100/top1": 0.53}},
    "scratch": {
        "paper: trained from scratch (CLIP-B shape)": {
            "hierarcaps/precision": 0.00, "hierarcaps/recall": 0.01, "hierarcaps/tau_d": 0.93,
            "hyperlex/rho_all": 0.11, "hyperlex/rho_nouns": 0.12}},
}


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


def markdown_table(results, published=()):
  """One row per model, then one per (name, metrics) pair of `published`; the columns of
  TABLE that any of our rows has (a published number of a benchmark not evaluated is left
  out). Our cells show the item count behind each number (`item_count`)."""
  rows = [(r["model"], r) for r in results] + list(published)
  columns = [(title, key) for title, key in TABLE if any(key in r for r in results)]
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


def write(results, output_dir, reference=""):
  """-> paths of results.json and results.md in `output_dir`."""
  os.makedirs(output_dir, exist_ok=True)
  json_path = os.path.join(output_dir, "results.json")
  md_path = os.path.join(output_dir, "results.md")
  with open(json_path, "w") as f:
    json.dump(results, f, indent=1)
  if reference and reference not in PUBLISHED:
    raise ValueError(f"reference {reference!r}: use one of {', '.join(PUBLISHED)}")
  with open(md_path, "w") as f:
    f.write(markdown_table(results, PUBLISHED[reference].items() if reference else ()))
  return json_path, md_path
