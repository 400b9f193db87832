"""Names of a dendrogram's internal nodes (SEED000 step 3).

Concept bank (CHOICE): the WordNet noun synsets on the hypernym paths
(`ontology.hypernym_path`) of the leaves' synsets, the leaves' own synsets left out, each named by its first lemma. A node's
prototype is the normalised sum of its leaves' centroids; its name is the bank entry of
highest cosine ("embedding", optionally unique: greedy from the root down), or the
WordNet lowest common ancestor of its leaves' synsets ("ontology_lca").
"""
import numpy as np

from hierre_jax.geometry import sphere
from hierre_jax.hierarchy import centroids as centroids_lib
from hierre_jax.hierarchy import ontology

MODES = ("embedding", "ontology_lca")


def concept_bank(leaf_synsets):
  """-> synsets on the leaves' first-hypernym paths, first-appearance order, leaves excluded."""
  leaves = set(leaf_synsets)
  bank = {}
  for synset in leaf_synsets:
    for above in ontology.hypernym_path(synset):
      if above not in leaves:
        bank.setdefault(above, None)
  return list(bank)


def lemma_name(synset):
  """'domestic_dog' -> 'domestic dog': a synset's first lemma as text."""
  return synset.lemmas()[0].name().replace("_", " ")


def embedding_names(tree, centroids, bank_embeddings, unique=False, geometry=sphere.SPHERE):
  """{internal node: index into the bank} most similar (`geometry.similarity`: the cosine on
  the sphere) to the node's prototype; `unique`: each bank entry used once, nodes served
  from the root down (breadth first)."""
  protos = centroids_lib.node_prototypes(tree, centroids, geometry)
  order, queue = [], [tree.root]
  while queue:  # breadth first from the root
    node = queue.pop(0)
    if node >= tree.num_leaves:
      order.append(node)
      queue.extend(tree.children[node])
  scores = {n: geometry.similarity(np.asarray(bank_embeddings), protos[n][None])[:, 0]
            for n in order}
  used, out = set(), {}
  for node in order:
    ranked = np.argsort(-scores[node], kind="stable")
    choice = next((int(i) for i in ranked if not unique or int(i) not in used), None)
    if choice is None:
      raise ValueError(f"unique names: the bank of {len(bank_embeddings)} concepts is "
                       f"smaller than the {len(order)} internal nodes")
    used.add(choice)
    out[node] = choice
  return out


def lowest_common_ancestor(synsets):
  """The deepest synset on every one of the first-hypernym paths of `synsets`."""
  paths = [ontology.hypernym_path(s) for s in synsets]
  common = None
  for depth in range(min(map(len, paths))):
    if len({p[depth] for p in paths}) > 1:
      break
    common = paths[0][depth]
  return common


def lca_names(tree, leaf_synsets):
  """{internal node: the WordNet lowest common ancestor of its leaves' synsets}."""
  return {n: lowest_common_ancestor([leaf_synsets[i] for i in tree.leaves_under(n)])
          for n in tree.internal}
