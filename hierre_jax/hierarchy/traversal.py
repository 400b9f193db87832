"""Tree-traversal inference with uncertainty-aware early stopping (SEED000 step 7).

From the root, an image embedding is compared with the prototypes of the node's two
children, p = softmax(logit_scale * sims) (`Geometry.similarity`: the cosine on the sphere,
the Lorentzian inner product on the hyperboloid); the walk stops at the node when the binary
entropy of p (in bits, CHOICE: 1 at a tie) exceeds the threshold, else it descends to the
more similar child; a leaf always stops it.
"""
import numpy as np
from scipy import special

from hierre_jax.geometry import sphere
from hierre_jax.hierarchy.centroids import node_prototypes

THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))  # CHOICE: the curve's thresholds
THRESHOLD = 0.5  # CHOICE: the threshold of the per-image explanations


def binary_entropy(p):
  """[...] probabilities -> entropy in bits (0 at p = 0 or 1)."""
  p = np.clip(p, 1e-12, 1 - 1e-12)
  return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def traverse(tree, prototypes, images, logit_scale, threshold, geometry=sphere.SPHERE):
  """[N, P] image embeddings -> [N] node where each walk stops (binary `tree`)."""
  children = np.array([c if len(c) == 2 else [-1, -1] for c in tree.children])
  similarity = geometry.similarity(np.asarray(images, np.float64), prototypes)  # [N, nodes]
  node = np.full(len(images), tree.root)
  active = np.ones(len(images), bool)
  while active.any():
    idx = np.flatnonzero(active)
    kids = children[node[idx]]  # [n, 2]
    sims = similarity[idx[:, None], kids]
    p_first = special.expit(logit_scale * (sims[:, 0] - sims[:, 1]))
    descend = binary_entropy(p_first) <= threshold
    node[idx[descend]] = np.where(p_first[descend] >= 0.5, kids[descend, 0], kids[descend, 1])
    active[idx[~descend]] = False
    active &= node >= tree.num_leaves  # leaves stop
  return node


def traversal_metrics(tree, stops, labels):
  """Leaf accuracy (stopped at the true leaf), hierarchical accuracy (stopped at an
  ancestor-or-self of it) and mean specificity (CHOICE: depth of the stop / depth of the
  true leaf) of [N] stop nodes for [N] true classes."""
  depth = tree.depths()
  on_path = np.array([stop in tree.path(label) for stop, label in zip(stops, labels)])
  return {"leaf_accuracy": float(np.mean(stops == labels)),
          "hierarchical_accuracy": float(on_path.mean()),
          "mean_specificity": float(np.mean(depth[stops] / np.maximum(depth[labels], 1)))}


def curve(tree, centroids, images, labels, logit_scale, thresholds=THRESHOLDS,
          geometry=sphere.SPHERE):
  """The accuracy-specificity curve over `thresholds`, and flat zero-shot accuracy (the
  most similar class centroid) beside it."""
  prototypes = node_prototypes(tree, centroids, geometry)
  rows = [{"threshold": float(t), **traversal_metrics(
      tree, traverse(tree, prototypes, images, logit_scale, t, geometry), np.asarray(labels))}
          for t in thresholds]
  flat = float(np.mean(np.argmax(geometry.similarity(np.asarray(images, np.float64), centroids),
                                 axis=1) == np.asarray(labels)))
  return {"curve": rows, "flat_accuracy": flat}


def explanations(tree, names, stops, labels, class_names):
  """Per image: the true class, the node the walk stopped at, its depth and the names on
  the path from the root down to it (`names`: one per node)."""
  depth = tree.depths()
  return [{"label": class_names[label], "stop": int(stop), "depth": int(depth[stop]),
           "path": [names[n] for n in tree.path(stop)]} for stop, label in zip(stops, labels)]
