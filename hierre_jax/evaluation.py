"""Evaluation library: embed with one model, HierarCaps metrics, angles, qualitative chains."""
import hashlib
import os
import time

import jax
import numpy as np

from hierre_jax import checkpoints
from hierre_jax import embedding
from hierre_jax import errors
from hierre_jax import geometry
from hierre_jax import hierarchical_retrieval as hr
from hierre_jax import image_preprocessing
from hierre_jax import input_pipeline
from hierre_jax import losses
from hierre_jax import models
from hierre_jax import run_checkpoints
from hierre_jax import sharding
from hierre_jax import tokenizer as tokenizer_lib


def is_train_workdir(path):
  return (os.path.isdir(os.path.join(path, "checkpoints"))
          and os.path.isdir(os.path.join(path, "model_info")))


def load_model(path):
  """-> (ClipConfig, params, dir with config and tokenizer files, checkpoint step or None).

  Train workdirs use the newest orbax checkpoint that verifies, and workdir/model_info;
  anything else is a Hugging Face directory or hub id. A model with its own RE root (a
  checkpoint's params["root"], a directory's checkpoints.ROOT_FILE) has it in
  params["root"].
  """
  if not is_train_workdir(path):
    config, params, model_dir = checkpoints.load_clip(path)
    root = checkpoints.read_root(model_dir, config.projection_dim)
    return config, params if root is None else {**params, "root": root}, model_dir, None
  ckpts = run_checkpoints.RunCheckpoints(os.path.join(path, "checkpoints"), read_only=True)
  params, step = ckpts.restore_latest_params()
  ckpts.close()
  if step is None:
    raise FileNotFoundError(f"{path}/checkpoints: no finished checkpoint")
  checkpoints.check_finite_params(params, f"{path}/checkpoints/{step}")
  info = os.path.join(path, "model_info")
  config = models.ClipConfig.from_hf(checkpoints.load_hf_config(info),
                                     scan_layers=checkpoints.has_stacked_layers(params))
  return config, params, info, step


def image_tower_fingerprint(params):
  """SHA-1 of the image tower's parameters: Embedders whose image towers (and image
  preprocessing) are equal may share their image features (`Embedder(image_features=)`)."""
  digest = hashlib.sha1()
  for leaf in jax.tree.leaves({k: params[k] for k in ("vision_model", "visual_projection")}):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def distinct(texts):
  """Texts in order of first appearance, without repeats (string identity)."""
  return list(dict.fromkeys(texts))


def index_rows(rows):
  """Rows of texts -> (distinct texts, [R, K] index of each row's texts among them)."""
  texts = distinct(t for row in rows for t in row)
  index = {t: i for i, t in enumerate(texts)}
  return texts, np.array([[index[t] for t in row] for row in rows])


RADII = {"euclidean": geometry.radius, "cosine": geometry.cosine_distance}


def retrieval_predictions(embedder, candidates, image_paths, num_levels, radius="euclidean"):
  """-> ([M, num_levels] candidate index per level, [N] candidate radii, stage seconds).

  radius: "euclidean" ||t - r|| (the release's quantitative evaluation) or "cosine"
  1 - <t, r> (its qualitative chains); the levels are evenly spaced in that radius.
  """
  t0 = time.perf_counter()
  text_emb, root = embedder.texts(candidates)
  t1 = time.perf_counter()
  image_emb = embedder.images(image_paths)
  t2 = time.perf_counter()
  radii = np.asarray(RADII[radius](text_emb, root))
  preds = hr.retrieve(text_emb, radii, image_emb, num_levels)
  seconds = {"embed_texts": t1 - t0, "embed_images": t2 - t1,
             "retrieval": time.perf_counter() - t2}
  return preds, radii, seconds


class Embedder:
  """Embeds texts (with the root) and images with one model's parameters.

  The root is `params["root"]` where the model has its own (see `load_model`), else the
  embedding of the empty string.

  `mesh`: the devices to split batches over; default this process's devices. Inside a
  multi-process run pass the global mesh: every process then calls the same methods.
  `image_features`: a {path: [P] features} dict to read and fill, shared with Embedders of
  the same image tower and preprocessing (see `image_tower_fingerprint`).
  """

  def __init__(self, config, params, model_dir, text_batch_size=256, image_batch_size=64,
               length_multiple=8, mesh=None, image_features=None):
    self.mesh = mesh or sharding.make_mesh(jax.local_devices())
    self.config, self.model_dir = config, model_dir
    params = dict(params)
    self.root = params.pop("root", None)
    if self.root is not None:
      self.root = np.asarray(self.root, np.float32)
    self.params = jax.device_put(params, sharding.replicated(self.mesh))
    self.tokenizer = tokenizer_lib.load_tokenizer(model_dir)
    self.text_batch_size, self.image_batch_size = text_batch_size, image_batch_size
    self.length_multiple = length_multiple
    self.preprocessing = image_preprocessing.Preprocessing.from_model_dir(
        model_dir, config.vision.image_size)
    self.checkpoint_step = None  # set by from_path for a train workdir
    self._image_features = {} if image_features is None else image_features  # path -> [P]

  @classmethod
  def from_path(cls, model_path, text_batch_size=256, image_batch_size=64, length_multiple=8):
    """An Embedder of a Hugging Face directory or hub id, or of a train workdir's newest
    verified checkpoint (its step in `checkpoint_step`)."""
    config, params, model_dir, step = load_model(model_path)
    embedder = cls(config, params, model_dir, text_batch_size, image_batch_size, length_multiple)
    embedder.checkpoint_step = step
    return embedder

  def texts(self, texts):
    """-> ([N, P] unit text features, [P] root: the model's own or the empty string's)."""
    texts = list(texts) + ([""] if self.root is None else [])
    feats = (embedding.embed_texts(self.config, self.params, self.tokenizer, texts,
                                   self.text_batch_size, self.mesh, self.length_multiple)
             if texts else np.zeros((0, self.config.projection_dim), np.float32))
    errors.require_finite(feats, f"{self.model_dir}: the text features (root included) of "
                          f"{len(texts)} texts")
    return (feats[:-1], feats[-1]) if self.root is None else (feats, self.root)

  def images(self, images):
    """Image paths or PIL images -> [N, P] unit features.

    Features of paths are kept for the Embedder's life (P floats per image: 50,000 images
    at P=768 take 150 MB), so evaluations that share images (HierarCaps and the COCO 1K
    subset, the four BREEDS sets) embed each image once.
    """
    if not all(isinstance(p, str) for p in images):
      return self._embed_images(images)
    new = [p for p in dict.fromkeys(images) if p not in self._image_features]
    missing = [p for p in new if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[:3]}")
    if new:
      self._image_features.update(zip(new, self._embed_images(new)))
    return np.stack([self._image_features[p] for p in images])

  def _embed_images(self, images):
    batches = image_preprocessing.load_batches(images, self.preprocessing, self.image_batch_size)
    feats = embedding.embed_images(self.config, self.params, batches, self.image_batch_size,
                                   -(-len(images) // self.image_batch_size), self.mesh)
    return errors.require_finite(feats, f"{self.model_dir}: the image features of "
                                 f"{len(images)} images")


def evaluate_hierarcaps(embedder, test_csv, images_dir, num_levels=hr.NUM_LEVELS,
                        ties="release"):
  """P, R, tau_d on a test file (tau_d ties as in hr.kendall_tau_vs_order), with timings."""
  data = input_pipeline.read_hierarchies(test_csv)
  candidates, row_tier_index = index_rows(data.positives)
  images, rows_table = hr.group_rows_by_image(data.images)
  preds, radii, seconds = retrieval_predictions(
      embedder, candidates, [os.path.join(images_dir, name) for name in images], num_levels)
  t = time.perf_counter()
  metrics, _, _ = hr.hierarcaps_metrics(preds, rows_table, row_tier_index, radii, ties)
  seconds["retrieval"] += time.perf_counter() - t
  metrics["seconds"] = seconds
  return metrics


def angle_statistics(embedder, csv_path, images=None):
  """Mean positive/negative exterior angles (SPEC section 3) over rows of a train-format file.

  With `images`, only rows of those images count (e.g. the held-out test images).
  """
  data = input_pipeline.read_hierarchies(csv_path)
  rows = [p + n for p, n, name in zip(data.positives, data.negatives, data.images)
          if images is None or name in images]
  if not rows:
    raise ValueError(f"{csv_path}: no rows of the requested images")
  texts, row_index = index_rows(rows)
  feats, root = embedder.texts(texts)
  emb = feats[row_index]  # [B, 8, D]
  p, q = losses.re_angles(emb, root)
  p, q = np.asarray(p), np.asarray(q)
  return {"angle_pos_mean": float(p.mean()), "angle_neg_mean": float(q.mean()),
          "pos_smaller_than_neg": float((p < q).mean()), "num_rows": len(rows)}


def qualitative(embedder, candidates_csv, images_dir, image_names, num_levels=hr.NUM_LEVELS,
                radius="cosine"):
  """{image name: predicted chain of texts, general to specific} over all distinct positive
  texts of `candidates_csv`, with the release's cosine-distance levels by default."""
  data = input_pipeline.read_hierarchies(candidates_csv)
  candidates = distinct(t for row in data.positives for t in row)
  preds, _, _ = retrieval_predictions(
      embedder, candidates, [os.path.join(images_dir, name) for name in image_names], num_levels,
      radius)
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
