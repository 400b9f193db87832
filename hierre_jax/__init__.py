"""hierre_jax: probe and align the hierarchical geometry of CLIP-like models (Radial Embeddings)."""
__version__ = "0.1.0"
