"""Drift of a resumed run's config from the one its checkpoints were trained with.

A workdir's `config.json` records the config its checkpoints were trained with. A
run restarted in that workdir with other values of keys that change the computation
is refused, listing them, unless the change is accepted knowingly
(`--allow_config_change`); keys that only change logging, checkpoint frequency,
evaluation, where files go or how the work is laid out may change
(`config_values.ResumeRules`), and every change is appended to `config_changes.jsonl`.
"""
import datetime
import json
import os

from hierre_jax.common.config_values import flatten
from hierre_jax.common.errors import ConfigError


def changed_keys(stored, current):
  """-> {key: (stored value, current value)} of the flattened configs' differences."""
  a, b = flatten(stored), flatten(current)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def config_json(config):
  return json.loads(config.to_json_best_effort())


def check_resume(workdir, config, resume_step, rules, allow_change=False, record=True):
  """Compares `config` with the workdir's config.json of a run resumed at `resume_step`,
  read by the objective's `rules` (`config_values.ResumeRules`).

  Raises ConfigError listing the keys that change the computation (unless
  `allow_change`); with `record` (process 0) appends every change to config_changes.jsonl.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = rules.read_stored(json.load(f))
  changes = changed_keys(stored, config_json(config))
  if not changes:
    return
  computational = {k: v for k, v in changes.items() if rules.is_computational(k)}
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
