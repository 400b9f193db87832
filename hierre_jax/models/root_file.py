"""The RE root file: the root of a model whose root is not its own empty-string embedding
(a fixed or a trained root, SPEC section 6), kept beside its weights in any format."""
import json
import os

import numpy as np

# The RE root of a model whose root is not its own empty-string embedding (a fixed or a
# trained root, SPEC section 6), beside the Hugging Face files: {"root": [P floats]}.
ROOT_FILE = "re_root.json"
ROOT_ABOUT = ("hierre_jax: the RE root of this model (the point genericness is measured "
              "from); use it in place of the embedding of the empty string")


def write_root(model_dir, root):
  """Writes [P] `root` to model_dir/ROOT_FILE (None: removes that file)."""
  path = os.path.join(model_dir, ROOT_FILE)
  if root is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path, "w") as f:
    json.dump({"about": ROOT_ABOUT, "root": [float(x) for x in np.asarray(root)]}, f)


def read_root(model_dir, dim):
  """-> the [dim] float32 root of model_dir/ROOT_FILE, or None where there is no such file."""
  path = os.path.join(model_dir, ROOT_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      root = np.asarray(json.load(f)["root"], np.float32)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a root file ({type(e).__name__}: {e}); expected "
                     '{"root": [numbers]}') from e
  if root.shape != (dim,) or not np.all(np.isfinite(root)):
    raise ValueError(f"{path}: the root must be {dim} finite numbers (the model's "
                     f"projection_dim); it has shape {root.shape}")
  return root
