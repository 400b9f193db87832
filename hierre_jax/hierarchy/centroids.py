"""Class centroids (SEED000 step 1): one [K, P] matrix of points of the model's geometry per
modality (unit vectors on the sphere; tangent-space means on the hyperboloid), with the
single samples (prompts or images) they average, which the alignment fits on."""
import numpy as np

from hierre_jax.common import errors
from hierre_jax.geometry import sphere

MAX_IMAGES_PER_CLASS = 1000  # CHOICE


def class_means(feats, labels, num_classes, geometry=sphere.SPHERE):
  """[K, P] centroid (`geometry.mean`: on the sphere the normalised mean) of each class's
  samples ([N, P] points, [N] classes), as float64 (computed in float64 on the sphere; the
  Lorentz mean runs in JAX, in float32)."""
  feats, labels = np.asarray(feats, np.float64), np.asarray(labels)
  return np.stack([geometry.mean(feats[labels == k], axis=0)
                   for k in range(num_classes)]).astype(np.float64)


def node_prototypes(tree, centroids, geometry=sphere.SPHERE):
  """[N, P]: a leaf's centroid; an internal node's centroid of its leaves' centroids
  (the prototype that names a node and that the traversal compares images with)."""
  out = np.zeros((len(tree.parent), centroids.shape[1]))
  out[:tree.num_leaves] = centroids
  for node in tree.internal:
    out[node] = geometry.mean(centroids[tree.leaves_under(node)], axis=0)
  return out


def text_centroids(embedder, class_names, templates):
  """Prompt-ensemble embeddings of the class names (CHOICE: the dataset's templates) ->
  ([K, P] centroids, [K * T, P] the single prompts' embeddings, [K * T] their classes)."""
  feats, _ = embedder.texts([t.format(c) for c in class_names for t in templates])
  labels = np.repeat(np.arange(len(class_names)), len(templates))
  return class_means(feats, labels, len(class_names), embedder.geometry), feats, labels


def image_centroids(embedder, images, labels, class_names, max_per_class=MAX_IMAGES_PER_CLASS,
                    seed=0):
  """Normalised mean image embedding of each class, over at most `max_per_class` images
  per class (a `seed`ed sample); `images` paths or PIL images, `labels` [N] ints ->
  ([K, P] centroids, [n, P] the embeddings of the images used, [n] their classes)."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  num_classes = len(class_names)
  missing = [name for k, name in enumerate(class_names) if not (labels == k).any()]
  if missing:
    raise errors.UserError(f"{len(missing)} of the {num_classes} classes have no images, e.g. "
                     f"{missing[:5]}")
  for k in range(num_classes):
    members = np.flatnonzero(labels == k)
    if len(members) > max_per_class:
      members = np.sort(rng.choice(members, max_per_class, replace=False))
    chosen.append(members)
  order = np.concatenate(chosen)
  feats = embedder.images([images[i] for i in order])
  return (class_means(feats, labels[order], num_classes, embedder.geometry), feats,
          labels[order])
