"""Prompt-ensemble label embeddings (Radford et al.): embed every template filled with a
label, normalise each, average, normalise again."""
import json

import numpy as np


def ensemble(embedder, labels, templates):
  """-> [L, P] unit label embeddings; one embedding pass over all labels x templates."""
  texts = [t.format(label) for label in labels for t in templates]
  feats, _ = embedder.texts(texts)
  mean = feats.reshape(len(labels), len(templates), -1).mean(axis=1)
  return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def load_classnames(path, dataset):
  """-> (class names, templates) of `dataset` (e.g. 'CIFAR100') in an OpenAI-style JSON
  `{dataset: {"classes": [...], "templates": [...]}}`."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if dataset not in data:
    raise KeyError(f"{path}: no {dataset!r}; it has {sorted(data)}")
  return data[dataset]["classes"], data[dataset]["templates"]
