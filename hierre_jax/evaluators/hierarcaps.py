"""HierarCaps evaluations (SPEC section 4): P, R, tau_d over 50 radii (the suite's evaluator),
the mean exterior angles of train-format rows, and the qualitative chains with their
agreement with published ones."""
import os
import time

import numpy as np

from hierre_jax.common import errors
from hierre_jax.data import hierarcaps_csv
from hierre_jax.evaluators import length_control
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import traversal
from hierre_jax.evaluators import uncertainty
from hierre_jax.radial import hierarchical_retrieval as hr
from hierre_jax.radial import losses
from hierre_jax.data.indexing import distinct, index_rows

def retrieval_predictions(embedder, candidates, image_paths, num_levels, radius=None):
  """-> ([M, num_levels] candidate index per level, [N] candidate radii, stage seconds).

  radius: the kind of the model geometry's radius (`Geometry.radius`; None its own, on
  the sphere "euclidean" ||t - r||, the release's quantitative evaluation; "cosine"
  1 - <t, r>, its qualitative chains); the levels are evenly spaced in that radius.
  """
  t0 = time.perf_counter()
  text_emb, root = embedder.texts(candidates)
  t1 = time.perf_counter()
  image_emb = embedder.images(image_paths)
  t2 = time.perf_counter()
  radii = np.asarray(embedder.geometry.radius(text_emb, root, radius))
  preds = hr.retrieve(text_emb, radii, image_emb, num_levels, geometry=embedder.geometry)
  seconds = {"embed_texts": t1 - t0, "embed_images": t2 - t1,
             "retrieval": time.perf_counter() - t2}
  return preds, radii, seconds


def evaluate_hierarcaps(embedder, test_csv, images_dir, num_levels=hr.NUM_LEVELS,
                        ties="release", root_vector=None):
  """P, R, tau_d on a test file (tau_d ties as in hr.kendall_tau_vs_order), with timings;
  for a hyperbolic model also P and R of MERU's traversal (`traversal`) in "traversal" (on
  the sphere too, to `root_vector`, where given: MERU's CLIP baselines);
  beside them what length explains (`length_checks`), recall and mean radius per depth, and
  in "items" each metric's per-item values (`uncertainty.Items`: rows for tau_d, images for
  P and R)."""
  data = hierarcaps_csv.read_hierarchies(test_csv)
  candidates, row_tier_index = index_rows(data.positives)
  images, rows_table = hr.group_rows_by_image(data.images)
  paths = [os.path.join(images_dir, name) for name in images]
  preds, radii, seconds = retrieval_predictions(embedder, candidates, paths, num_levels)
  t = time.perf_counter()
  metrics, precision, tiers_found, tau = hr.hierarcaps_metrics(preds, rows_table,
                                                                row_tier_index, radii, ties)
  items = {"precision": precision, "recall": tiers_found.mean(1), "tau_d": tau}
  row_radii = radii[row_tier_index]  # [R, 4]
  for depth in range(row_tier_index.shape[1]):
    items[f"depth/{depth + 1}/mean_radius"] = row_radii[:, depth]
    items[f"depth/{depth + 1}/recall"] = tiers_found[:, depth].astype(np.float64)
  more, more_items = length_checks(candidates, row_tier_index, radii, embedder.model.tokenizer,
                                   ties, image_of_row(rows_table, len(row_tier_index)),
                                   items)
  metrics.update(more)
  items.update(more_items)
  chains, choices = traversal_chains(embedder, candidates, paths, root_vector)
  if chains is not None:
    precision, recall = traversal.chain_metrics(
        chains, hr.ground_truth_indices(rows_table, row_tier_index))
    metrics["traversal"] = {"precision": float(precision.mean()),
                            "recall": float(recall.mean()), **choices}
    items.update({"traversal/precision": precision, "traversal/recall": recall})
  items = {k: v for k, v in items.items() if len(v)}  # (a subset no test row falls in)
  for key, values in items.items():  # every item metric as a number too ("a/b": a's b)
    if key not in ("precision", "recall", "tau_d") and not key.startswith("traversal/"):
      metrics[key] = float(np.nanmean(values))
  seconds["retrieval"] += time.perf_counter() - t
  metrics["seconds"] = seconds
  metrics["items"] = {k: uncertainty.Items("mean", (np.asarray(v, np.float64),))
                      for k, v in items.items()}
  return metrics


def traversal_chains(embedder, candidates, paths, root_vector=None):
  """MERU's traversal chains of the images over the candidates, and its recorded choices:
  in the model's space where it has one (MERU's hyperboloid), on the sphere to
  `root_vector` ([P], a CLIP baseline's stored root) where given; (None, None) otherwise."""
  geometry = embedder.geometry
  if geometry.has_traversal:
    text_emb, root = embedder.texts(candidates)
    return (traversal.traverse(geometry, text_emb, embedder.images(paths), root),
            {**traversal.CHOICES, "walk_to": traversal.WALK_TO[embedder.root_source]})
  if root_vector is None:
    return None, None
  if geometry.name != "sphere" or len(root_vector) != embedder.model.embedding_size:
    raise errors.UserError(
        f"a traversal root of {len(root_vector)} numbers: the walk to a stored root runs on "
        f"the sphere in the model's {embedder.model.embedding_size} dimensions; "
        f"{embedder.model.model_dir} lives in {geometry.name} space with features of "
        f"{embedder.model.embedding_size}")
  chains = traversal.traverse_sphere(root_vector, embedder.texts(candidates)[0],
                                     embedder.images(paths))
  return chains, {**traversal.CHOICES, "walk_to": "the given root vector, on the sphere"}


def image_of_row(rows_table, num_rows):
  """[R] the image index of each row (`hr.group_rows_by_image`'s table read backwards)."""
  out = np.empty(num_rows, np.int64)
  for m, rows in enumerate(rows_table):
    out[rows[rows >= 0]] = m
  return out


def length_checks(candidates, row_tier_index, radii, tokenizer, ties, row_image, items):
  """-> (counts, per-item values) of what caption length explains (`length_control`): the
  token- and word-count baselines' tau_d, the model's order beyond length, and tau_d, P and
  R on the paper's controlled subsets (P and R over the images of the subset's rows)."""
  tokens = length_control.token_counts(tokenizer, candidates)
  words = length_control.word_counts(candidates)
  out = {"baseline/tokens/tau_d": hr.kendall_tau_vs_order(
             tokens[row_tier_index].astype(np.float64), ties),
         "baseline/words/tau_d": hr.kendall_tau_vs_order(
             words[row_tier_index].astype(np.float64), ties),
         "beyond_length/tau_d": length_control.tau_a_vs_order(
             length_control.residual_after_length(radii, tokens)[row_tier_index])}
  counts = {}
  for name, mask in length_control.subset_masks(words[row_tier_index]).items():
    subset_images = np.unique(row_image[mask])
    out[f"subset/{name}/tau_d"] = items["tau_d"][mask]
    out[f"subset/{name}/precision"] = items["precision"][subset_images]
    out[f"subset/{name}/recall"] = items["recall"][subset_images]
    counts[f"subset/{name}/num_rows"] = int(mask.sum())
  return counts, out


def angle_statistics(embedder, csv_path, images=None):
  """Mean positive/negative exterior angles (SPEC section 3) over rows of a train-format file.

  With `images`, only rows of those images count (e.g. the held-out test images).
  """
  data = hierarcaps_csv.read_hierarchies(csv_path)
  rows = [p + n for p, n, name in zip(data.positives, data.negatives, data.images)
          if images is None or name in images]
  if not rows:
    raise ValueError(f"{csv_path}: no rows of the requested images")
  texts, row_index = index_rows(rows)
  feats, root = embedder.texts(texts)
  emb = feats[row_index]  # [B, 8, D]
  p, q = losses.re_angles(emb, root, geometry=embedder.geometry)
  p, q = np.asarray(p), np.asarray(q)
  return {"angle_pos_mean": float(p.mean()), "angle_neg_mean": float(q.mean()),
          "pos_smaller_than_neg": float((p < q).mean()), "num_rows": len(rows)}


CHAIN_PROCEDURES = ("levels", "traversal")


def qualitative(embedder, candidates_csv, images_dir, image_names, num_levels=hr.NUM_LEVELS,
                radius=None, procedure="levels"):
  """{image name: predicted chain of texts, general to specific} over all distinct positive
  texts of `candidates_csv`: the texts retrieved at `num_levels` levels evenly spaced in
  `radius` (a kind of the geometry's radius; None: its `chain_radius`, on the sphere the
  release's cosine distance), or (procedure="traversal", a hyperbolic model) MERU's
  traversal (`traversal.traverse`)."""
  if procedure not in CHAIN_PROCEDURES:
    raise errors.UserError(f"chains {procedure!r}: use one of {', '.join(CHAIN_PROCEDURES)}")
  radius = radius or embedder.geometry.chain_radius
  if radius not in embedder.geometry.radius_kinds:
    raise errors.UserError(f"radius {radius!r}: this model's {embedder.geometry.name} space has "
                           f"{', '.join(embedder.geometry.radius_kinds)}")
  if procedure == "traversal" and not embedder.geometry.has_traversal:
    raise errors.UserError("traversal chains walk a hyperbolic model's space; this model's "
                           f"features live in {embedder.geometry.name} space")
  data = hierarcaps_csv.read_hierarchies(candidates_csv)
  candidates = distinct(t for row in data.positives for t in row)
  paths = [os.path.join(images_dir, name) for name in image_names]
  if procedure == "traversal":
    text_emb, root = embedder.texts(candidates)
    chains = traversal.traverse(embedder.geometry, text_emb, embedder.images(paths), root)
  else:
    preds, _, _ = retrieval_predictions(embedder, candidates, paths, num_levels, radius)
    chains = hr.prediction_chains(preds)
  return {name: [candidates[i] for i in chain] for name, chain in zip(image_names, chains)}


def published_form(chains):
  """Chains as the release published them: without their first element (the text nearest
  the root, the same for every image)."""
  return {name: chain[1:] for name, chain in chains.items()}


def chain_agreement(chains, reference):
  """Agreement of predicted chains with reference chains ({image: [texts]}) on shared images:
  mean Jaccard of the text sets, share of identical chains, mean length of each."""
  shared = [name for name in chains if name in reference]
  if not shared:
    raise ValueError("no image of the predictions is in the reference")
  jaccard = [len(set(chains[n]) & set(reference[n])) / len(set(chains[n]) | set(reference[n]))
             for n in shared]
  return {"images": len(shared), "mean_jaccard": float(np.mean(jaccard)),
          "identical_chains": float(np.mean([chains[n] == reference[n] for n in shared])),
          "mean_length": float(np.mean([len(chains[n]) for n in shared])),
          "reference_mean_length": float(np.mean([len(reference[n]) for n in shared]))}




class HierarCaps:
  """The 50-radius retrieval metrics on a HierarCaps test file and its images."""

  name = "hierarcaps"

  def __init__(self, test_csv, images_dir, ties="release", traversal_root=""):
    self.test_csv, self.images_dir, self.ties = test_csv, images_dir, ties
    self.root_vector = traversal.read_root_vector(traversal_root) if traversal_root else None

  def run(self, embedder):
    return evaluate_hierarcaps(embedder, self.test_csv, self.images_dir,
                               ties=self.ties, root_vector=self.root_vector)


registry.register(registry.Entry(
    "hierarcaps",
    files={"hierarcaps_test_csv": ("hierarcaps", "hierarcaps_test.csv"),
           "hierarcaps_images": ("hierarcaps", "test_images")},
    build=lambda paths, options: HierarCaps(paths["hierarcaps_test_csv"],
                                            paths["hierarcaps_images"], options["tau_d_ties"],
                                            options["traversal_root"]),
    options=(registry.Option("tau_d_ties", "release", "tau_d with tied radii: the release's "
                             "stable-sort ranks (ties in tier order), or tau-b (NaN rows left "
                             "out).", ("release", "tau_b")),
             registry.Option("traversal_root", "", "MERU's CLIP baselines: MERU's traversal on "
                             "the sphere, from each image to this stored root vector (.npy, "
                             ".json list or .pt tensor), reported beside RE's levels; without "
                             "it a model on the sphere gets no traversal.")),
    columns=(("HierarCaps P", "hierarcaps/precision"), ("R", "hierarcaps/recall"),
             ("tau_d", "hierarcaps/tau_d"),
             ("MERU traversal P", "hierarcaps/traversal/precision"),
             ("R", "hierarcaps/traversal/recall")),
    item_count=lambda result, key: (  # rows for tau_d, images for P and R
        result.get("hierarcaps/num_rows") or result.get("hierarcaps/num_images")
        if key.endswith("tau_d") else result.get("hierarcaps/num_images")),
    in_run=False))  # a training run evaluates HierarCaps from config.eval.test_csv
