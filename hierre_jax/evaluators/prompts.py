"""Prompt-ensemble label embeddings (Radford et al.): embed every template filled with a
label and take the centroid in the model's space (on the sphere: normalise each, average,
normalise again)."""
import json



def ensemble(embedder, labels, templates):
  """-> [L, P] label embeddings (`Geometry.mean` of each label's templates); one embedding
  pass over all labels x templates."""
  texts = [t.format(label) for label in labels for t in templates]
  feats, _ = embedder.texts(texts)
  return embedder.geometry.mean(feats.reshape(len(labels), len(templates), -1), axis=1)


def load_classnames(path, dataset):
  """-> (class names, templates) of `dataset` (e.g. 'CIFAR100') in an OpenAI-style JSON
  `{dataset: {"classes": [...], "templates": [...]}}`."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if dataset not in data:
    raise KeyError(f"{path}: no {dataset!r}; it has {sorted(data)}")
  return data[dataset]["classes"], data[dataset]["templates"]
