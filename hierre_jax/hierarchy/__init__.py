"""Semantic hierarchies from class centroids (../shared/SEED000_SPEC.md): the binary tree a
model induces over a set of classes, named from WordNet and compared with human
ontologies. Every step marked CHOICE in the spec is an argument with that default.

  centroids.py    class centroids of texts (prompt ensemble) or images (step 1)
  trees.py        rooted trees over classes: dendrograms and ontologies (step 2)
  ontology.py     WordNet, CIFAR-100 and grouping ontologies as trees (step 4)
  naming.py       names of internal nodes from a WordNet concept bank (step 3)
  consistency.py  tree- and edge-level consistency, with chance levels (steps 5, 6)
  traversal.py    tree-traversal inference with entropy early stopping (step 7)
  alignment.py    the UMAP-guided alignment map and its sweep over beta (step 8)
  classes.py      the class sets (CIFAR-100, ImageNet, BREEDS, a JSON file) and their images
  probe.py        one model and class set -> hierarchy.json; __main__.py: the entry point
  plot.py         the named dendrogram, coloured by agreement with an ontology
"""
