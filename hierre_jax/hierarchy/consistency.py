"""Tree- and edge-level consistency of a model's dendrogram with a human ontology (SEED000
steps 5 and 6), each with its chance level from the same tree with shuffled leaves.

Both trees are over the same K classes (leaf i = class i). The ontology's unary chains
are collapsed for clades; its path lengths count WordNet edges as they are.
"""
import itertools

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

MAX_TRIPLETS = 200_000  # CHOICE: all triples up to this many, else a fixed-seed sample


def leaf_triples(k, max_triplets=MAX_TRIPLETS, seed=0):
  """[T, 3] leaf triples: all C(k, 3), or `max_triplets` distinct-leaf triples drawn with `seed`."""
  if k * (k - 1) * (k - 2) // 6 <= max_triplets:
    return np.array(list(itertools.combinations(range(k), 3)), np.int64).reshape(-1, 3)
  rng = np.random.default_rng(seed)
  out = np.stack([rng.choice(k, 3, replace=False) for _ in range(max_triplets)])
  return np.sort(out, axis=1)


def triplet_agreement(tree, ontology, triples):
  """Share of the ontology-resolved triples (one pair's common ancestor strictly deeper
  than the other two's) whose resolved pair the tree also joins first (chance 1/3 for a
  binary tree) -> (agreement, number of resolved triples)."""
  pairs = [(0, 1), (0, 2), (1, 2)]

  def lca_depths(t):
    lca, depth = t.lca(), t.depths()
    return np.stack([depth[lca[triples[:, a], triples[:, b]]] for a, b in pairs], axis=1)

  onto, model = lca_depths(ontology), lca_depths(tree)
  top = np.sort(onto, axis=1)
  resolved = top[:, 2] > top[:, 1]
  agree = np.argmax(onto, axis=1) == np.argmax(model, axis=1)
  model_top = np.sort(model, axis=1)
  agree &= model_top[:, 2] > model_top[:, 1]  # a non-binary tree that does not resolve: no
  n = int(resolved.sum())
  return (float(agree[resolved].mean()) if n else float("nan")), n


def distance_correlations(tree, ontology):
  """Spearman and Pearson correlation, over leaf pairs, of the tree's cophenetic distances
  (merge height of the pair's common ancestor) and the ontology's path lengths."""
  i, j = np.triu_indices(tree.num_leaves, 1)
  cophenetic = tree.heights[tree.lca()[i, j]]
  path = ontology.path_lengths()[i, j]
  return {"spearman": float(stats.spearmanr(cophenetic, path).statistic),
          "pearson": float(stats.pearsonr(cophenetic, path).statistic)}


def level_labels(ontology, depth):
  """[K] the ancestor of each leaf at `depth` edges below the root (the leaf itself when
  it is shallower)."""
  out = []
  for leaf in range(ontology.num_leaves):
    path = ontology.path(leaf)
    out.append(path[min(depth, len(path) - 1)])
  return np.array(out)


def cluster_agreement(tree, ontology):
  """Per ontology level (depth d of the collapsed ontology with 1 < clusters < K): the tree
  cut into as many clusters, against the level's groups -> {d: {clusters, fmi, ari}}."""
  collapsed = ontology.collapsed()
  out = {}
  for depth in range(1, int(collapsed.depths().max()) + 1):
    truth = level_labels(collapsed, depth)
    n = len(set(truth.tolist()))
    if 1 < n < tree.num_leaves:
      cut = tree.cut(n)
      out[depth] = {"clusters": n, "fmi": float(sk_metrics.fowlkes_mallows_score(truth, cut)),
                    "ari": float(sk_metrics.adjusted_rand_score(truth, cut))}
  return out


def compatible_clades(tree, ontology):
  """{internal node of `tree` but its root: whether its clade is compatible with every
  clade of the (collapsed) ontology: nested in it, holding it, or disjoint from it}."""
  def matrix(clades):
    m = np.zeros((len(clades), tree.num_leaves), np.int64)
    for row, leaves in enumerate(clades):
      m[row, list(leaves)] = 1
    return m

  nodes, model = zip(*tree.clades().items())
  onto = matrix(list(ontology.collapsed().clades().values()))
  a = matrix(model)
  shared = a @ onto.T
  ok = (shared == 0) | (shared == a.sum(1)[:, None]) | (shared == onto.sum(1)[None, :])
  return dict(zip(nodes, ok.all(axis=1).tolist()))


def clade_measures(tree, ontology):
  """Edge level: share of the tree's clades compatible with every ontology clade (nested
  or disjoint), share of the (collapsed) ontology's clades the tree reproduces exactly,
  and the F1 of exact clade matches."""
  model = set(tree.clades().values())
  onto = set(ontology.collapsed().clades().values())
  exact = len(model & onto)
  precision = exact / len(model) if model else float("nan")
  recall = exact / len(onto) if onto else float("nan")
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  compatible = list(compatible_clades(tree, ontology).values())
  return {"compatible_clades": float(np.mean(compatible)),
          "reproduced_ontology_clades": recall, "clade_precision": precision, "clade_f1": f1,
          "num_tree_clades": len(model), "num_ontology_clades": len(onto)}


def named_edge_consistency(tree, node_synsets, is_ancestor_or_self):
  """Share of the tree's edges parent -> child, both with a synset in `node_synsets`
  ({node: synset}), whose parent's synset is an ancestor-or-self of the child's."""
  edges = [(node_synsets[int(p)], node_synsets[c]) for c, p in enumerate(tree.parent)
           if p >= 0 and c in node_synsets and int(p) in node_synsets]
  if not edges:
    return float("nan")
  return float(np.mean([is_ancestor_or_self(p, c) for p, c in edges]))


def tree_measures(tree, ontology, triples):
  """Every measure that needs only the two trees, flat: {name: value}."""
  agreement, resolved = triplet_agreement(tree, ontology, triples)
  out = {"triplet_agreement": agreement, "resolved_triplets": resolved}
  out.update({f"cophenetic_{k}": v for k, v in distance_correlations(tree, ontology).items()})
  for depth, values in cluster_agreement(tree, ontology).items():
    out.update({f"level_{depth}/{k}": v for k, v in values.items()})
  out.update(clade_measures(tree, ontology))
  return out


def with_chance(tree, ontology, triples, permutations=20, seed=0):
  """tree_measures and, for each float measure, its chance level: the mean over
  `permutations` trees of the same shape with shuffled leaves -> (measures, chance)."""
  measures = tree_measures(tree, ontology, triples)
  rng = np.random.default_rng(seed)
  runs = [tree_measures(tree.with_leaves_permuted(rng.permutation(tree.num_leaves)), ontology,
                        triples) for _ in range(permutations)]
  chance = {k: float(np.mean([r[k] for r in runs])) for k, v in measures.items()
            if isinstance(v, float) and all(k in r for r in runs)}
  return measures, chance
