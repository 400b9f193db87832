"""One model, one class set -> the hierarchy the model induces, named, measured against
human ontologies and (with labelled images) walked with early stopping: the contents of
hierarchy.json. Every CHOICE of ../shared/SEED000_SPEC.md is an argument and is recorded."""
import dataclasses

import numpy as np

from hierre_jax.common import errors
from hierre_jax.hierarchy import alignment
from hierre_jax.hierarchy import centroids as centroids_lib
from hierre_jax.hierarchy import consistency
from hierre_jax.hierarchy import naming
from hierre_jax.hierarchy import ontology
from hierre_jax.hierarchy import traversal
from hierre_jax.hierarchy import trees

ONTOLOGIES = ("wordnet", "cifar100_superclasses", "breeds")


@dataclasses.dataclass
class Choices:
  """The method's choices (SEED000 CHOICE marks), with their defaults."""
  linkage: str = "ward"  # or "average" (cosine)
  naming: str = "embedding"  # or "ontology_lca"
  unique_names: bool = False
  max_images_per_class: int = centroids_lib.MAX_IMAGES_PER_CLASS
  max_triplets: int = consistency.MAX_TRIPLETS
  chance_permutations: int = 20
  seed: int = 0
  hypernym: str = "deepest hypernym, ties by name (ontology.first_hypernym)"
  concept_bank: str = "WordNet ancestors of the leaves' synsets, leaves excluded; first lemma"
  text_centroids: str = "prompt ensemble over the class set's templates"
  entropy: str = "binary entropy in bits"
  thresholds: tuple = traversal.THRESHOLDS
  explain_threshold: float = traversal.THRESHOLD  # per-image stops, depths and name paths
  align_betas: tuple = ()  # the alignment's sweep (empty: no alignment)
  align_steps: int = 300
  align_mix: float = alignment.MIX
  align_neighbours: int = alignment.NEIGHBOURS
  align_samples_per_class: int = alignment.SAMPLES_PER_CLASS


def ontology_tree(name, class_set):
  if name == "wordnet":
    if not class_set.synsets:
      raise ontology.OntologyError(f"{class_set.name}: the wordnet ontology needs WordNet ids "
                                   "of the classes")
    return ontology.wordnet_tree(class_set.classes, class_set.synsets)
  if name not in class_set.groups:
    choices = (["wordnet"] if class_set.synsets else []) + sorted(class_set.groups)
    raise ontology.OntologyError(f"--ontology={name}: the class set {class_set.name} has no "
                                 f"{name!r} grouping; use one of {', '.join(choices)}")
  return ontology.grouping_tree(class_set.classes, class_set.groups[name])


def name_nodes(embedder, tree, centroids, class_set, choices):
  """-> ({internal node: name}, {node: synset} of the named nodes and the leaves)."""
  if not class_set.synsets:
    return {}, {}
  if choices.naming == "ontology_lca":
    chosen = naming.lca_names(tree, class_set.synsets)
  else:
    bank = naming.concept_bank(class_set.synsets)
    bank_emb = centroids_lib.text_centroids(embedder, [naming.lemma_name(s) for s in bank],
                                            class_set.templates)[0]
    chosen = {n: bank[i] for n, i in naming.embedding_names(
        tree, centroids, bank_emb, choices.unique_names, embedder.geometry).items()}
  synsets = {**dict(enumerate(class_set.synsets)), **chosen}
  return {n: naming.lemma_name(s) for n, s in chosen.items()}, synsets


def probe(embedder, class_set, modality, ontology_names, choices=Choices(), images=None,
          eval_images=None):
  """-> (result dict for hierarchy.json, the Tree).

  images: (images, labels) the image centroids are built from (modality "image");
  eval_images: (images, labels) the traversal is evaluated on (skipped if None).
  """
  geometry = embedder.geometry
  if choices.align_betas and geometry.name != "sphere":
    raise errors.UserError(f"{embedder.model.model_dir}: the UMAP-guided alignment "
                           "(--align_betas) is built for features on the sphere; this model's "
                           f"live in {geometry.name} space")
  if modality == "text":
    cents, *samples = centroids_lib.text_centroids(embedder, class_set.classes,
                                                   class_set.templates)
  elif modality == "image":
    cents, *samples = centroids_lib.image_centroids(
        embedder, images[0], images[1], class_set.classes, choices.max_images_per_class,
        choices.seed)
  else:
    raise ValueError(f"modality {modality!r}: use 'text' or 'image'")
  tree = trees.dendrogram(cents, class_set.classes, choices.linkage, geometry)
  node_names, node_synsets = name_nodes(embedder, tree, cents, class_set, choices)
  triples = consistency.leaf_triples(len(class_set.classes), choices.max_triplets, choices.seed)
  result = {
      "class_set": class_set.name, "modality": modality, "geometry": geometry.name,
      "choices": dataclasses.asdict(choices),
      "classes": class_set.classes, "wnids": class_set.wnids,
      "tree": {"parent": tree.parent.tolist(), "heights": tree.heights.tolist(),
               "names": [node_names.get(n, tree.names[n]) for n in range(len(tree.parent))]},
      "ontologies": {},
  }
  for name in ontology_names:
    measures, chance = consistency.with_chance(tree, ontology_tree(name, class_set), triples,
                                               choices.chance_permutations, choices.seed)
    result["ontologies"][name] = {"measures": measures, "chance": chance}
  if node_synsets:
    result["named_edge_consistency"] = consistency.named_edge_consistency(
        tree, node_synsets, ontology.is_ancestor_or_self)
  eval_feats = None
  if eval_images is not None:
    eval_feats = embedder.images(eval_images[0])
    model = embedder.model
    logit_scale = float(np.exp(np.asarray(model.family.log_logit_scale(model.params))))
    labels = np.asarray(eval_images[1])
    result["traversal"] = {"num_images": len(eval_feats), "logit_scale": logit_scale,
                           **traversal.curve(tree, cents, eval_feats, labels, logit_scale,
                                             choices.thresholds, geometry)}
    stops = traversal.traverse(tree, centroids_lib.node_prototypes(tree, cents, geometry),
                               eval_feats, logit_scale, choices.explain_threshold, geometry)
    result["traversal"]["explanations"] = traversal.explanations(
        tree, result["tree"]["names"], stops, labels, class_set.classes)
  if choices.align_betas:
    zero_shot = None
    if eval_feats is not None:  # the class prompts' centroids classify the images
      text_cents = cents if modality == "text" else centroids_lib.text_centroids(
          embedder, class_set.classes, class_set.templates)[0]
      zero_shot = (text_cents, eval_feats, labels)
    result["alignment"] = align(class_set, ontology_names[0], samples, zero_shot, triples,
                                choices)
  return result, tree


def align(class_set, ontology_name, samples, zero_shot, triples, choices):
  """The UMAP-guided alignment's sweep over choices.align_betas against one ontology:
  consistency of the re-built tree, and zero-shot accuracy where there are images
  (`zero_shot`: [K, P] class text embeddings, [M, P] images, [M] classes; or None)."""
  onto = ontology_tree(ontology_name, class_set)

  def measure(centroids):
    tree = trees.dendrogram(centroids, class_set.classes, choices.linkage)
    values = consistency.tree_measures(tree, onto, triples)
    return {k: values[k] for k in ("triplet_agreement", "cophenetic_spearman",
                                   "compatible_clades")}

  rows = alignment.sweep(samples[0], samples[1], onto, choices.align_betas, measure,
                         choices.align_steps, zero_shot, choices.seed,
                         choices.align_samples_per_class)
  return {"ontology": ontology_name, "rows": rows}
