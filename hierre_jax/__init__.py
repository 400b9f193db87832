"""hierre_jax: probe and align the hierarchical geometry of CLIP-like models (Radial Embeddings)."""
import importlib
import os
import sys

__version__ = "0.1.0"
PLUGINS_VARIABLE = "HIERRE_JAX_PLUGINS"

# `python -m hierre_jax.<entry point>` imports JAX, Flax and transformers before its first
# line of work (tens of seconds on a small CPU): say so at once. While -m looks for the
# module, sys.argv[0] is "-m" (Python's documentation of the -m option).
if sys.argv[:1] == ["-m"]:
  print("hierre_jax: loading JAX, Flax and transformers ...", file=sys.stderr, flush=True)


def _import_plugins():
  """Imports the modules HIERRE_JAX_PLUGINS names (comma-separated), each of which registers
  model families (`models.register`) or evaluators (`evaluators.registry.register`): with
  the package, so that every entry point knows them before it defines its flags."""
  value = os.environ.get(PLUGINS_VARIABLE, "")
  for name in filter(None, (n.strip() for n in value.split(","))):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ImportError(f"{PLUGINS_VARIABLE}={value}: module {name!r} cannot be imported "
                        f"({e})") from None


_import_plugins()
