"""The activations of Hugging Face configs (`hidden_act`), by the names transformers uses."""
import functools

import jax

from hierre_jax.common import errors

ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
}


def check(hf_config):
  """Raises a one-line UserError when a tower of `hf_config` names an unknown activation."""
  for tower in ("text_config", "vision_config"):
    act = getattr(hf_config, tower).hidden_act
    if act not in ACTIVATIONS:
      raise errors.UserError(f"config {tower}.hidden_act={act!r} is not supported; known: "
                             f"{sorted(ACTIVATIONS)}")
