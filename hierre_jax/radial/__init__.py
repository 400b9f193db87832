"""The Radial Embedding (RE) method: geometry, losses, training batches, hierarchical
retrieval and its report."""
