"""hierre_jax: probe and align the hierarchical geometry of CLIP-like models (Radial Embeddings)."""
import sys

__version__ = "0.1.0"

# `python -m hierre_jax.<entry point>` imports JAX, Flax and transformers before its first
# line of work (tens of seconds on a small CPU): say so at once. While -m looks for the
# module, sys.argv[0] is "-m" (Python's documentation of the -m option).
if sys.argv[:1] == ["-m"]:
  print("hierre_jax: loading JAX, Flax and transformers ...", file=sys.stderr, flush=True)
