"""A dendrogram PNG with node names, each merge coloured by agreement with an ontology."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from scipy.cluster import hierarchy as scipy_hierarchy  # pylint: disable=wrong-import-position

from hierre_jax.hierarchy import consistency  # pylint: disable=wrong-import-position

AGREE, DISAGREE = "tab:green", "tab:red"


def linkage_matrix(tree):
  """The scipy linkage matrix of a dendrogram `Tree` (internal node K + i = row i)."""
  rows = []
  for node in tree.internal:
    a, b = tree.children[node]
    rows.append([a, b, tree.heights[node], len(tree.leaves_under(node))])
  return np.array(rows, np.float64)


def plot_dendrogram(tree, node_names, compatible, out_path, title=""):
  """`node_names` {internal node: name}; `compatible` {internal node: bool} colours the
  merge green (its clade is compatible with the ontology) or red."""
  k = tree.num_leaves
  fig, ax = plt.subplots(figsize=(max(8, 0.18 * k), 7))
  color = lambda link: AGREE if compatible.get(link, True) else DISAGREE
  drawn = scipy_hierarchy.dendrogram(linkage_matrix(tree), labels=tree.names[:k], ax=ax,
                                     link_color_func=color, leaf_font_size=7)
  x = {leaf: 5.0 + 10.0 * rank for rank, leaf in enumerate(drawn["leaves"])}
  for node in tree.internal:  # scipy draws a merge at the mean x of its children
    x[node] = float(np.mean([x[c] for c in tree.children[node]]))
    if node_names.get(node):
      ax.annotate(node_names[node], (x[node], tree.heights[node]), fontsize=6,
                  ha="center", va="bottom", rotation=30)
  ax.set_ylabel("merge height")
  ax.set_title(title + "  (green: clade compatible with the ontology; red: not)", fontsize=9)
  fig.tight_layout()
  fig.savefig(out_path, dpi=130)
  plt.close(fig)
  return out_path


def plot_probe(result, tree, ontology_tree, out_path, title=""):
  """The dendrogram of a `probe.probe` result, named as in the result and coloured by
  agreement with `ontology_tree`."""
  names = result["tree"]["names"]
  return plot_dendrogram(tree, {n: names[n] for n in tree.internal},
                         consistency.compatible_clades(tree, ontology_tree), out_path, title)
