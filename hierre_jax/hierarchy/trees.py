"""Rooted trees over K classes: the model's dendrogram (SEED000 step 2) and human ontologies.

Nodes 0..K-1 are the leaves, in class order; nodes K.. are internal. A tree is its parent
array (the root's parent is -1), node names, and for a dendrogram the merge heights.
"""
import dataclasses

import numpy as np
from scipy.cluster import hierarchy as scipy_hierarchy

from hierre_jax.geometry import sphere

LINKAGES = ("ward", "average")  # CHOICE: Ward on Euclidean; average linkage on cosine


@dataclasses.dataclass
class Tree:
  parent: np.ndarray  # [N] int, -1 at the root
  names: list  # [N] str
  num_leaves: int
  heights: np.ndarray = None  # [N] merge heights (0 at the leaves); dendrograms only

  def __post_init__(self):
    self.parent = np.asarray(self.parent, np.int64)
    roots = np.flatnonzero(self.parent < 0)
    if len(roots) != 1:
      raise ValueError(f"a tree has one root; this one has {len(roots)}")
    self.root = int(roots[0])
    self.children = [[] for _ in self.parent]
    for node, parent in enumerate(self.parent):
      if parent >= 0:
        self.children[parent].append(node)
    leaves_with_children = [n for n in range(self.num_leaves) if self.children[n]]
    if leaves_with_children:
      raise ValueError(f"leaves {leaves_with_children[:5]} have children")

  @property
  def internal(self):
    return range(self.num_leaves, len(self.parent))

  def path(self, node):
    """Nodes from the root down to `node`."""
    out = [node]
    while self.parent[out[-1]] >= 0:
      out.append(int(self.parent[out[-1]]))
    return out[::-1]

  def depths(self):
    """[N] edges from the root."""
    return np.array([len(self.path(n)) - 1 for n in range(len(self.parent))])

  def leaves_under(self, node):
    """Sorted leaf indices of the subtree of `node`."""
    stack, out = [node], []
    while stack:
      n = stack.pop()
      if n < self.num_leaves:
        out.append(n)
      stack.extend(self.children[n])
    return sorted(out)

  def clades(self):
    """{internal node: frozenset of its leaves}, the root left out (it holds every leaf)."""
    return {n: frozenset(self.leaves_under(n)) for n in self.internal if n != self.root}

  def lca(self):
    """[K, K] lowest common ancestor node of every pair of leaves (the leaf on the diagonal)."""
    paths = [self.path(leaf) for leaf in range(self.num_leaves)]
    table = np.full((self.num_leaves, max(map(len, paths))), -1)
    for leaf, p in enumerate(paths):
      table[leaf, :len(p)] = p
    same = (table[:, None, :] == table[None, :, :]) & (table[:, None, :] >= 0)
    shared = np.cumprod(same, axis=2).sum(axis=2)  # length of the common root path
    return table[np.arange(self.num_leaves)[:, None], shared - 1]

  def path_lengths(self):
    """[K, K] edges between leaves."""
    depth = self.depths()
    leaf_depth = depth[:self.num_leaves]
    return leaf_depth[:, None] + leaf_depth[None, :] - 2 * depth[self.lca()]

  def cut(self, num_clusters):
    """[K] cluster labels after undoing the num_clusters - 1 highest merges (a dendrogram)."""
    internal = sorted(self.internal, key=lambda n: self.heights[n], reverse=True)
    removed = set(internal[:num_clusters - 1])
    tops = [n for n in range(len(self.parent))
            if n not in removed and (self.parent[n] < 0 or self.parent[n] in removed)]
    labels = np.empty(self.num_leaves, np.int64)
    for label, top in enumerate(tops):
      labels[self.leaves_under(top)] = label
    return labels

  def collapsed(self):
    """The tree without internal nodes of a single child (their child takes their place)."""
    keep = [n for n in range(len(self.parent)) if n < self.num_leaves or len(self.children[n]) != 1]
    new_index = {n: i for i, n in enumerate(keep)}
    parent = []
    for n in keep:
      p = int(self.parent[n])
      while p >= 0 and p not in new_index:
        p = int(self.parent[p])
      parent.append(new_index[p] if p >= 0 else -1)
    heights = None if self.heights is None else self.heights[keep]
    return Tree(np.array(parent), [self.names[n] for n in keep], self.num_leaves, heights)

  def with_leaves_permuted(self, perm):
    """The same shape with leaf perm[i] in the place of leaf i (chance levels)."""
    parent = self.parent.copy()
    parent[:self.num_leaves] = self.parent[np.asarray(perm)]
    return Tree(parent, list(self.names), self.num_leaves, self.heights)


def dendrogram(centroids, class_names, linkage="ward", geometry=sphere.SPHERE):
  """Agglomerative clustering of [K, P] centroids (points of `geometry`, in its Euclidean
  `chart`: the sphere's unit vectors, the hyperboloid's tangent vectors at the origin) into
  a full binary tree (K - 1 merges with heights): Ward on Euclidean distance, or average
  linkage on cosine."""
  if linkage not in LINKAGES:
    raise ValueError(f"linkage {linkage!r}: use one of {LINKAGES}")
  metric = "euclidean" if linkage == "ward" else "cosine"
  merges = scipy_hierarchy.linkage(np.asarray(geometry.chart(centroids), np.float64), linkage,
                                   metric)
  k = len(class_names)
  parent = np.full(2 * k - 1, -1)
  heights = np.zeros(2 * k - 1)
  for i, (a, b, height, _) in enumerate(merges):
    parent[int(a)] = parent[int(b)] = k + i
    heights[k + i] = height
  return Tree(parent, list(class_names) + [""] * (k - 1), k, heights)


def from_paths(class_names, paths):
  """A tree whose leaf i (class_names[i]) hangs below the last node of paths[i], a list
  of internal node names from the top down; paths of different tops get a common root."""
  index, parent, names = {}, [], []

  def node(name, parent_node):
    if name not in index:
      index[name] = len(class_names) + len(names)
      names.append(name)
      parent.append(parent_node)
    return index[name]

  tops = {p[0] for p in paths}
  top = node("(root)", -1) if len(tops) > 1 else -1
  leaf_parent = []
  for path in paths:
    above = top
    for name in path:
      above = node(name, above)
    leaf_parent.append(above)
  return Tree(np.array(leaf_parent + parent), list(class_names) + names, len(class_names))
