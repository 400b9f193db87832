"""Zero-shot classification top-1/top-5 (SPEC section 5): prompt-ensemble class embeddings,
each image predicted as the class of highest similarity. CIFAR-10/100 are read through
tensorflow-datasets (the user's prepared data; no download here)."""
import numpy as np
from PIL import Image

from hierre_jax.common.errors import DataError
from hierre_jax.geometry import sphere
from hierre_jax.evaluators import prompts
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import uncertainty
from hierre_jax.evaluators.ranking import similarity_ranks


def tfds_images(name, split="test", data_dir=None):
  """-> (list of PIL images, [N] int labels) of a prepared tfds dataset, read with
  `tfds.data_source` (no TensorFlow needed)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("zero-shot CIFAR needs tensorflow-datasets: pip install "
                      "'hierre_jax[tfds]'") from e
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f"tensorflow-datasets {name!r} ({split}) is not prepared in "
        f"{data_dir or '~/tensorflow_datasets'} ({type(e).__name__}); prepare it once where "
        f"there is internet: python -c \"import tensorflow_datasets as tfds; "
        f"tfds.data_source('{name}', split='{split}', download=True)\"") from e
  examples = [source[i] for i in range(len(source))]
  return ([Image.fromarray(np.asarray(x["image"])) for x in examples],
          np.array([int(x["label"]) for x in examples]))


def top_k_accuracy(image_emb, label_emb, labels, ks=(1, 5), chunk=4096, geometry=sphere.SPHERE):
  """[M, D] images, [L, D] classes, [M] true class -> {'top{k}': share with the class among
  the k most similar, and "items": the hits per image}; equal similarities rank the lower
  class index first."""
  ranks = similarity_ranks(image_emb, label_emb, labels, chunk, geometry)
  return {**{f"top{k}": float((ranks < k).mean()) for k in ks},
          "items": {f"top{k}": uncertainty.hits(ranks < k) for k in ks}}


class ZeroShot:
  """Top-1/top-5 of a class list and templates on (PIL images, labels)."""

  def __init__(self, name, classes, templates, images, labels):
    self.name, self.classes, self.templates = name, classes, templates
    self.images, self.labels = images, labels

  @classmethod
  def cifar(cls, name, classnames_json, tfds_data_dir=None):
    """name: 'cifar10' or 'cifar100'; classes and templates from the OpenAI CIFAR file."""
    classes, templates = prompts.load_classnames(classnames_json, name.upper())
    return cls(name, classes, templates, *tfds_images(name, data_dir=tfds_data_dir))

  def run(self, embedder):
    label_emb = prompts.ensemble(embedder, self.classes, self.templates)
    image_emb = embedder.images(self.images)
    return {**top_k_accuracy(image_emb, label_emb, self.labels, geometry=embedder.geometry),
            "num_images": len(self.labels), "num_classes": len(self.classes),
            "num_templates": len(self.templates)}



def _cifar_entry(name, title):
  return registry.Entry(
      name, files={"cifar_classnames": ("classnames", "cifar_classnames_openai.json")},
      build=lambda paths, options: ZeroShot.cifar(name, paths["cifar_classnames"],
                                                  options["tfds_data_dir"]),
      columns=((f"{title} top-1", f"{name}/top1"),),
      options=(TFDS_DATA_DIR,))


TFDS_DATA_DIR = registry.Option("tfds_data_dir", None, "tensorflow-datasets data directory for "
                                "CIFAR (default: tfds' own, ~/tensorflow_datasets).")


registry.register(_cifar_entry("cifar10", "CIFAR-10"))
registry.register(_cifar_entry("cifar100", "CIFAR-100"))
