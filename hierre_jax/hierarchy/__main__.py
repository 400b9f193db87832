"""The hierarchy a dual encoder induces over a class set, named and measured against human
ontologies (../shared/SEED000_SPEC.md).

  python -m hierre_jax.hierarchy --model=DIR --classes=cifar100 --modality=text \
      --ontology=wordnet,cifar100_superclasses --output_dir=OUT

--classes: cifar100 | imagenet | breeds:<name> | FILE.json (hierre_jax/hierarchy/classes.py).
Images (the image modality's centroids; the traversal's evaluation with
--eval_images): CIFAR-100 from tensorflow-datasets (train split for centroids, test split
for the traversal), else an ImageNet-style folder (--images, --eval_images). Writes
OUT/hierarchy.json (tree, names, heights, every measure with its chance level, every
choice) and OUT/dendrogram.png (coloured by agreement with the first ontology).
WordNet: NLTK's (nltk.download('wordnet') once, or NLTK_DATA).
"""
import json
import os

from absl import flags

from hierre_jax.common import cli
from hierre_jax import embedding
from hierre_jax import loading
from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax.hierarchy import classes as classes_lib
from hierre_jax.hierarchy import consistency
from hierre_jax.hierarchy import naming
from hierre_jax.hierarchy import ontology
from hierre_jax.hierarchy import plot
from hierre_jax.hierarchy import probe
from hierre_jax.hierarchy import trees

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A model directory of any family or hub id, or a hierre_jax.train workdir.")
flags.DEFINE_string("classes", "cifar100", "cifar100 | imagenet | breeds:<name> | FILE.json")
flags.DEFINE_enum("modality", "text", ["text", "image"], "Centroids of class-name prompts or "
                  "of images.")
flags.DEFINE_list("ontology", ["wordnet"], f"Human ontologies, any of {probe.ONTOLOGIES}.")
flags.register_validator("ontology", lambda names: set(names) <= set(probe.ONTOLOGIES),
                         f"--ontology: use names of {', '.join(probe.ONTOLOGIES)}")
flags.DEFINE_string("output_dir", None, "Where hierarchy.json and dendrogram.png go.")
flags.DEFINE_string("data_dir", "../shared", "Data root laid out like the project's ../shared.")
flags.DEFINE_string("images", "", "Image folder <images>/<wnid or class>/* for the image "
                    "modality (CIFAR-100: tensorflow-datasets' train split when empty).")
flags.DEFINE_string("eval_images", "", "Image folder for the traversal ('tfds': CIFAR-100's "
                    "test split; empty: no traversal).")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data directory.")
cli.define_image_features_flag()
flags.DEFINE_enum("linkage", "ward", list(trees.LINKAGES), "CHOICE: agglomerative linkage.")
flags.DEFINE_enum("naming", "embedding", list(naming.MODES), "CHOICE: node naming.")
flags.DEFINE_bool("unique_names", False, "CHOICE: each concept names one node at most.")
flags.DEFINE_integer("max_images_per_class", probe.Choices.max_images_per_class, "CHOICE.")
flags.DEFINE_integer("max_triplets", consistency.MAX_TRIPLETS, "CHOICE: triplets sampled "
                     "beyond this many.")
flags.DEFINE_integer("chance_permutations", 20, "Shuffled-leaf trees per chance level.")
flags.DEFINE_list("align_betas", [], "UMAP-guided alignment against the first ontology, one "
                  "fitted map per beta (e.g. 0.01,0.1,1); empty: no alignment.")
flags.DEFINE_integer("align_steps", 300, "Adam steps of each alignment map.")


def images_of(class_set, folder, split):
  if folder == "tfds":
    folder = ""
  return classes_lib.labelled_images(class_set, folder, split, FLAGS.tfds_data_dir,
                                     FLAGS.max_images_per_class)


def main(argv):
  del argv
  wn = ontology.wordnet()
  owner = {"writer": "hierre_jax.hierarchy", "model": locations.real(FLAGS.model)
           if os.path.exists(FLAGS.model) else FLAGS.model, "classes": FLAGS.classes,
           "modality": FLAGS.modality}
  errors.require_writable_dir(FLAGS.output_dir, "output folder")
  inputs = [(f"--{k}", FLAGS[k].value) for k in ("model", "classes", "data_dir", "images",
                                                 "eval_images", "tfds_data_dir")
            if FLAGS[k].value not in (None, "tfds")]
  locations.check_apart([("--output_dir", FLAGS.output_dir)], inputs)
  own_store = ([os.path.join(FLAGS.model, embedding.IMAGE_FEATURES)]
               if loading.is_train_workdir(FLAGS.model) else [])
  locations.check_apart([("--image_features_dir", FLAGS.image_features_dir)], inputs,
                        allowed=own_store)
  locations.check_claimable(FLAGS.output_dir, owner, "--output_dir")
  class_set = classes_lib.load(FLAGS.classes, FLAGS.data_dir, wn)
  for name in FLAGS.ontology:  # each available for this class set, before any compute
    probe.ontology_tree(name, class_set)
  choices = probe.Choices(FLAGS.linkage, FLAGS.naming, FLAGS.unique_names,
                          FLAGS.max_images_per_class, FLAGS.max_triplets,
                          FLAGS.chance_permutations,
                          align_betas=tuple(float(b) for b in FLAGS.align_betas),
                          align_steps=FLAGS.align_steps)
  images = images_of(class_set, FLAGS.images, "train") if FLAGS.modality == "image" else None
  eval_images = images_of(class_set, FLAGS.eval_images, "test") if FLAGS.eval_images else None
  embedder = loading.embedder(FLAGS.model, FLAGS.image_features_dir)
  result, tree = probe.probe(embedder, class_set, FLAGS.modality, FLAGS.ontology, choices,
                             images, eval_images)
  result = {"model": FLAGS.model, "checkpoint_step": embedder.checkpoint_step, **result}
  locations.claim(FLAGS.output_dir, owner, "--output_dir")
  with open(os.path.join(FLAGS.output_dir, "hierarchy.json"), "w") as f:
    json.dump(result, f, indent=1)
  first = FLAGS.ontology[0]
  plot.plot_probe(result, tree, probe.ontology_tree(first, class_set),
                  os.path.join(FLAGS.output_dir, "dendrogram.png"),
                  f"{FLAGS.model}: {class_set.name}, {FLAGS.modality} centroids vs {first}")
  for name, values in result["ontologies"].items():
    m, c = values["measures"], values["chance"]
    print(f"{name}: triplet agreement {m['triplet_agreement']:.3f} (chance "
          f"{c['triplet_agreement']:.3f}), compatible clades {m['compatible_clades']:.3f} "
          f"(chance {c['compatible_clades']:.3f}), cophenetic Spearman "
          f"{m['cophenetic_spearman']:.3f}")
  print(f"wrote {FLAGS.output_dir}/hierarchy.json and dendrogram.png")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model", "output_dir"])
  cli.run(main)
