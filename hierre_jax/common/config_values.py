"""Reading values of an ml_collections config: a number within bounds, a dotted key, a
flattened view; a bad value is a one-line errors.ConfigError naming the key."""
import dataclasses
import math

from hierre_jax.common.errors import ConfigError

# Keys (dotted; a prefix ending in '.' covers a sub-config) that never change what is
# trained: where things are written, how often, what is evaluated, and recomputation.
NON_COMPUTATIONAL = ("workdir", "export_dir", "log_every", "checkpoint_every",
                     "keep_checkpoints", "compilation_cache_dir", "remat", "eval.")


@dataclasses.dataclass(frozen=True)
class ResumeRules:
  """How an objective's stored config.json is compared with the config of a resumed run
  (`trainer.checks.check_resume`): `added_keys` {key: the value runs started before the key
  existed had; "a.b" for a key added inside the dict a, where the run has one};
  `renamed_values` {key: {old value: new value}}; `layout_keys`: the
  objective's keys that only change how the work is laid out (beside NON_COMPUTATIONAL)."""
  added_keys: dict = dataclasses.field(default_factory=dict)
  renamed_values: dict = dataclasses.field(default_factory=dict)
  layout_keys: tuple = ()

  def is_computational(self, key):
    return not any(key == k or (k.endswith(".") and key.startswith(k))
                   for k in NON_COMPUTATIONAL + self.layout_keys)

  def read_stored(self, stored):
    """A stored config (a dict) -> as a config of today reads it."""
    stored = {**{k: v for k, v in self.added_keys.items() if "." not in k}, **stored}
    for key, value in self.added_keys.items():  # "a.b": added inside a dict the run has
      *parents, leaf = key.split(".")
      inner = stored
      for p in parents:
        inner = inner.get(p) if isinstance(inner, dict) else None
      if isinstance(inner, dict):
        inner.setdefault(leaf, value)
    for key, renames in self.renamed_values.items():
      if isinstance(stored.get(key), str) and stored[key] in renames:
        stored[key] = renames[stored[key]]
    return stored


def number(config, key, low=None, high=None, low_open=False, high_open=False, integer=False):
  """config.<key> if it is a finite number (an integer with `integer`) within the bounds, else
  ConfigError naming the key, its value and the valid range."""
  value = lookup(config, key)
  kind = "an integer" if integer else "a finite number"
  ok = isinstance(value, int) if integer else (isinstance(value, (int, float))
                                               and math.isfinite(value))
  ok = ok and not isinstance(value, bool)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok and integer and low == 0 and low_open and high is None:
    raise ConfigError(f"config.{key}={value!r}: must be a positive integer")
  if not ok:
    bounds = []
    if low is not None:
      bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
      bounds.append(f"{'<' if high_open else '<='} {high}")
    raise ConfigError(f"config.{key}={value!r}: must be {kind}"
                      + (f" {' and '.join(bounds)}" if bounds else ""))
  return value


def lookup(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def flatten(tree, prefix="", sep="."):
  """Nested dict -> {'<prefix>a.b': value} (`sep` between the levels)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}{sep}", sep))
    else:
      out[f"{prefix}{k}"] = v
  return out
