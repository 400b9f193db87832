"""Class centroids (SEED000 step 1): one [K, P] matrix of unit vectors per modality."""
import numpy as np

from hierre_jax.evaluators import prompts

MAX_IMAGES_PER_CLASS = 1000  # CHOICE


def text_centroids(embedder, class_names, templates):
  """[K, P] prompt-ensemble embeddings of the class names (CHOICE: the dataset's templates)."""
  return prompts.ensemble(embedder, class_names, templates)


def prompt_samples(embedder, class_names, templates):
  """The single prompts behind `text_centroids`: ([K * T, P] unit embeddings, [K * T] classes)."""
  feats, _ = embedder.texts([t.format(c) for c in class_names for t in templates])
  return feats, np.repeat(np.arange(len(class_names)), len(templates))


def image_centroids(embedder, images, labels, num_classes, max_per_class=MAX_IMAGES_PER_CLASS,
                    seed=0):
  """[K, P] normalised mean image embedding of each class, over at most `max_per_class`
  images per class (a `seed`ed sample); `images` paths or PIL images, `labels` [N] ints.
  -> (centroids, [n, P] the embeddings of the images used, [n] their classes)."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  for k in range(num_classes):
    members = np.flatnonzero(labels == k)
    if not len(members):
      raise ValueError(f"class {k} has no images")
    if len(members) > max_per_class:
      members = np.sort(rng.choice(members, max_per_class, replace=False))
    chosen.append(members)
  order = np.concatenate(chosen)
  feats = embedder.images([images[i] for i in order])
  out, start = [], 0
  for members in chosen:
    mean = feats[start:start + len(members)].mean(axis=0)
    out.append(mean / np.linalg.norm(mean))
    start += len(members)
  return np.stack(out), feats, labels[order]
