"""The DCSM scorer CNN (DCSM_SPEC section 5) and its PyTorch state-dict layout.

A map [rows, 30] is a one-channel image (height = image tokens, width = caption tokens):
conv 3x3 (1 -> 4) -> ReLU -> channel dropout -> conv 3x3 (4 -> 4) -> ReLU -> channel
dropout -> flatten -> dense 128 -> ReLU -> dropout -> dense 1 -> dropout (the release drops
out the final logit too). 3,026,365 parameters at 197 x 30.

PyTorch flattens fc1's input in (C, H, W) order, Flax in (H, W, C): `to_state_dict` and
`from_state_dict` reorder fc1's input axis, and convert conv kernels OIHW <-> HWIO.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors

CHANNELS = 4
HIDDEN = 128


def state_dict_shapes(rows, cols):
  """The release's `model_state_dict` keys and shapes for [rows, cols] maps."""
  return {
      "conv1.weight": (CHANNELS, 1, 3, 3), "conv1.bias": (CHANNELS,),
      "conv2.weight": (CHANNELS, CHANNELS, 3, 3), "conv2.bias": (CHANNELS,),
      "fc1.weight": (HIDDEN, CHANNELS * rows * cols), "fc1.bias": (HIDDEN,),
      "fc2.weight": (1, HIDDEN), "fc2.bias": (1,)}


class Scorer(nn.Module):
  """maps [N, rows, cols] -> scores [N]; `dropout` the release's p (0.1)."""
  dropout: float = 0.1

  @nn.compact
  def __call__(self, maps, train=False):
    x = maps[..., None]
    for name in ("conv1", "conv2"):  # channel dropout: whole channels of a map dropped
      x = nn.relu(nn.Conv(CHANNELS, (3, 3), padding=1, name=name)(x))
      x = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(HIDDEN, name="fc1")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(1, name="fc2")(x)
    return nn.Dropout(self.dropout, deterministic=not train)(x)[:, 0]


INITS = ("flax", "pytorch")  # CHOICE: the CNN's initial draws


def check_init(init):
  if init not in INITS:
    raise errors.ConfigError(f"config.init={init!r}: use one of {', '.join(INITS)}")


def init_params(rows, cols, seed=0, init="flax"):
  """Random parameters for [rows, cols] maps: "flax", Flax's defaults (weights truncated
  normal of std 1/sqrt(fan_in), biases 0); "pytorch", PyTorch's Conv2d / Linear defaults
  (weights and biases uniform in +-1/sqrt(fan_in): fc1's std a sqrt(3) smaller)."""
  check_init(init)
  params = Scorer().init(jax.random.key(seed), jnp.zeros((1, rows, cols)))["params"]
  if init == "flax":
    return params
  keys = iter(jax.random.split(jax.random.key(seed), 2 * len(params)))
  out = {}
  for name in sorted(params):
    kernel = params[name]["kernel"]
    bound = 1.0 / np.sqrt(np.prod(kernel.shape[:-1]))  # fan_in: all but the output axis
    out[name] = {k: jax.random.uniform(next(keys), params[name][k].shape, jnp.float32,
                                       -bound, bound) for k in ("kernel", "bias")}
  return out


def num_params(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def to_state_dict(params, rows, cols):
  """Flax params -> {name: numpy array} in the release's `model_state_dict` layout."""
  fc1 = np.asarray(params["fc1"]["kernel"])  # [(h, w, c), 128] -> [128, (c, h, w)]
  fc1 = fc1.reshape(rows, cols, CHANNELS, HIDDEN).transpose(3, 2, 0, 1).reshape(HIDDEN, -1)
  return {"conv1.weight": np.asarray(params["conv1"]["kernel"]).transpose(3, 2, 0, 1),
          "conv1.bias": np.asarray(params["conv1"]["bias"]),
          "conv2.weight": np.asarray(params["conv2"]["kernel"]).transpose(3, 2, 0, 1),
          "conv2.bias": np.asarray(params["conv2"]["bias"]),
          "fc1.weight": fc1, "fc1.bias": np.asarray(params["fc1"]["bias"]),
          "fc2.weight": np.asarray(params["fc2"]["kernel"]).T,
          "fc2.bias": np.asarray(params["fc2"]["bias"])}


def float32_array(value):
  """A numpy array or a torch tensor (on any device) -> float32 numpy."""
  return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                    np.float32)


def from_state_dict(state_dict, source="state dict"):
  """The release's `model_state_dict` (numpy or torch tensors) -> (Flax params, rows, cols);
  rows from fc1's size at 30 columns. UserError naming `source` and the key at fault."""
  sd = {k: float32_array(v) for k, v in state_dict.items()}
  if "fc1.weight" not in sd:
    raise errors.UserError(f"{source}: no fc1.weight: not a DCSM scorer state dict "
                           f"(keys: {sorted(sd)[:8]})")
  cols = 30
  rows = sd["fc1.weight"].shape[1] // (CHANNELS * cols)
  expected = state_dict_shapes(rows, cols)
  for key in sorted(set(expected) | set(sd)):
    if key not in sd or key not in expected or sd[key].shape != expected[key]:
      raise errors.UserError(
          f"{source}: {key}: " + ("missing" if key not in sd else "unexpected key"
                                  if key not in expected else
                                  f"shape {sd[key].shape}, expected {expected[key]}")
          + f" (a scorer of {rows} x {cols} maps)")
  fc1 = sd["fc1.weight"].reshape(HIDDEN, CHANNELS, rows, cols).transpose(2, 3, 1, 0)
  params = {"conv1": {"kernel": sd["conv1.weight"].transpose(2, 3, 1, 0),
                      "bias": sd["conv1.bias"]},
            "conv2": {"kernel": sd["conv2.weight"].transpose(2, 3, 1, 0),
                      "bias": sd["conv2.bias"]},
            "fc1": {"kernel": fc1.reshape(-1, HIDDEN), "bias": sd["fc1.bias"]},
            "fc2": {"kernel": sd["fc2.weight"].T, "bias": sd["fc2.bias"]}}
  return jax.tree.map(jnp.asarray, params), rows, cols
