"""Checks of a train config: values that cannot work, and drift from a run being resumed.

A workdir's `config.json` records the config its checkpoints were trained with. A
run restarted in that workdir with other values of keys that change the computation
is refused, listing them, unless the change is accepted knowingly
(`--allow_config_change`); keys that only change logging, checkpoint frequency,
evaluation or where files go may change, and every change is appended to
`config_changes.jsonl`.
"""
import datetime
import json
import math
import os

from hierre_jax import embedding
from hierre_jax import errors

# Keys (dotted; a prefix ending in '.' covers a sub-config) that do not change what is
# trained: where things are written, how often, and what is evaluated.
# Also how the work is laid out (the same losses, up to float rounding).
NON_COMPUTATIONAL = ("workdir", "export_dir", "log_every", "checkpoint_every",
                     "keep_checkpoints", "compilation_cache_dir", "remat", "pullback_cache",
                     "pack_texts", "pack_rows_multiple", "eval.")


# Keys added after runs were started, with the value such a run had: a stored config.json
# without the key is read with this value (a run of unrolled layers resumes only with
# scan_layers=False: its checkpoints hold that layout).
ADDED_KEYS = {"compute_dtype": "float32", "scan_layers": False, "pullback_cache": False,
              "tiers": [0, 1, 2, 3],
              "negatives": True, "loss": "re", "ec_k": 0.1, "ec_margin": 0.1,
              "root": "empty_string", "trainable": "text_tower", "train_images_dir": "",
              "pack_texts": False, "pack_rows_multiple": 1}

# Values renamed since runs were started: a stored config.json holding the old value is read
# with the new one (a run of loss="clip" resumes as loss="contrastive").
RENAMED_VALUES = {"loss": {"clip": "contrastive"}}

# config.root: the tower's own empty-string embedding (moves with the weights), or a fixed
# root (SPEC section 6); config.trainable: what the optimizer updates.
ROOT_MODES = ("empty_string", "mean", "origin", "pretrained")
TRAINABLE = ("text_tower", "root")
LOSSES = ("re", "ec", "contrastive")


class ConfigError(errors.UserError):
  """A config value that cannot work, or a resumed run whose config changed."""


SCHEDULES = ("constant", "warmup_cosine")
MATMUL_PRECISIONS = ("highest", "high", "default")


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


def validate(config):
  """Raises ConfigError naming the first key whose value cannot work: missing, of the wrong
  type, not finite, out of range, or not one of the choices."""
  try:
    check_values(config)
  except (KeyError, AttributeError) as e:
    name = str(e.args[0] if e.args else e).splitlines()[0].strip("'\" ")
    raise ConfigError(f"the config has no key {name!r} (a config file written for another "
                      "version of hierre_jax? compare it with configs/clip_b32.py)") from None


def check_values(config):
  for key in ("batch_size", "log_every", "checkpoint_every", "length_multiple",
              "pack_rows_multiple", "eval.text_batch_size", "eval.image_batch_size"):
    number(config, key, 0, low_open=True, integer=True)
  number(config, "eval.image_workers", 0, integer=True)
  if number(config, "eval.every_steps", integer=True) < 0:
    raise ConfigError(f"config.eval.every_steps={config.eval.every_steps!r}: must be an "
                      "integer >= 0 (0: evaluate only at the start and the end)")
  number(config, "warmup_steps", 0, integer=True)
  number(config, "seed", integer=True)
  total_steps = number(config, "total_steps", integer=True)
  if total_steps <= 0 and number(config, "num_epochs", integer=True) <= 0:
    raise ConfigError(f"config.total_steps={config.total_steps} and config.num_epochs="
                      f"{config.num_epochs}: one of them must be positive")
  for key in ("lr", "weight_decay", "grad_clip_norm", "lambda_p", "lambda_e", "lambda_m"):
    number(config, key, 0)
  number(config, "b1", 0, 1, high_open=True)
  number(config, "b2", 0, 1, high_open=True)
  number(config, "eps", 0, low_open=True)
  tiers = tuple(config.tiers)
  if len(tiers) < 2 or tiers != tuple(sorted(set(tiers))) or not set(tiers) <= {0, 1, 2, 3}:
    raise ConfigError(f"config.tiers={config.tiers!r}: two or more of the tiers 0, 1, 2, 3 "
                      "(0-based), increasing")
  for key, allowed in (("root", ROOT_MODES), ("trainable", TRAINABLE), ("loss", LOSSES),
                       ("schedule", SCHEDULES), ("matmul_precision", MATMUL_PRECISIONS),
                       ("compute_dtype", embedding.COMPUTE_DTYPES)):
    if config[key] not in allowed:
      renamed = RENAMED_VALUES.get(key, {}).get(config[key])
      raise ConfigError(f"config.{key}={config[key]!r}: use one of {allowed}"
                        + (f" (renamed {renamed!r})" if renamed else ""))
  if config.trainable == "root" and (config.root == "empty_string"
                                     or config.loss == "contrastive"):
    raise ConfigError(
        f"config.trainable='root' with config.root={config.root!r}, config.loss="
        f"{config.loss!r}: a trained root starts from a fixed one (root='pretrained' for the "
        "paper's row) and only the RE or EC loss depends on it")
  if config.loss == "contrastive" and not config.train_images_dir:
    raise ConfigError("config.loss='contrastive' needs config.train_images_dir: the folder of "
                      "the training rows' images (image_url file names)")
  if config.loss == "ec":
    number(config, "ec_k", 0, low_open=True)
    number(config, "ec_margin", 0)
  if config.keep_checkpoints is not None and config.keep_checkpoints < 1:
    raise ConfigError(f"config.keep_checkpoints={config.keep_checkpoints}: keep at least 1 "
                      "(a resumed run needs one)")
  if not config.workdir:
    raise ConfigError("config.workdir is empty")


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


def changed_keys(stored, current):
  """-> {key: (stored value, current value)} of the flattened configs' differences."""
  a, b = flatten(stored), flatten(current)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def is_computational(key):
  return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in NON_COMPUTATIONAL)


def config_json(config):
  return json.loads(config.to_json_best_effort())


def check_resume(workdir, config, resume_step, allow_change=False, record=True,
                 added_keys=None):
  """Compares `config` with the workdir's config.json of a run resumed at `resume_step`
  (a stored config without a key of `added_keys`, default ADDED_KEYS, has its value).

  Raises ConfigError listing the keys that change the computation (unless
  `allow_change`); with `record` (process 0) appends every change to config_changes.jsonl.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = {**(ADDED_KEYS if added_keys is None else added_keys), **json.load(f)}
  for key, renames in RENAMED_VALUES.items():
    if isinstance(stored.get(key), str) and stored[key] in renames:
      stored[key] = renames[stored[key]]
  changes = changed_keys(stored, config_json(config))
  if not changes:
    return
  computational = {k: v for k, v in changes.items() if is_computational(k)}
  if computational and not allow_change:
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in computational.items())
    raise ConfigError(
        f"{workdir} holds a run at step {resume_step} trained with another config; changed "
        f"keys that change the computation: {listed}. Use another workdir, restore the old "
        "values, or pass --allow_config_change to resume with the new ones knowingly")
  if not record:
    return
  with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
    f.write(json.dumps({
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "resumed_at_step": resume_step, "accepted_computational_change": bool(computational),
        "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()}}) + "\n")
