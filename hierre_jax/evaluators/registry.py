"""Evaluators by name. Each evaluator module declares what the suite needs of it in an
`Entry` and `register`s it: its name, the files it reads under a data root laid out like
the project's ../shared, the options it takes, how to build it, its columns in the
Table-1-shaped summary, how many items each metric is over, and whether a training run may
list it. `hierre_jax.evaluators` imports the modules in the order of the summary's columns;
`suite` looks names up here.
"""
import dataclasses
import os
from typing import Any, Callable, Optional

from hierre_jax.common import errors

OPTION_KINDS = ("string", "bool", "integer")  # or a tuple of the allowed strings


@dataclasses.dataclass(frozen=True)
class Option:
  """A choice an evaluator takes: the flag `--<name>` of the entry points that run the
  suite, its default and help, and its kind (one of OPTION_KINDS, or the allowed values)."""
  name: str
  default: Any
  help: str
  kind: Any = "string"


@dataclasses.dataclass(frozen=True)
class Entry:
  """One evaluator as the suite sees it.

  files: {path key: its place under the data root, as path parts}; each key is a flag of
    the entry points that run the suite (`--<key>`) and a key of config.eval.paths.
  build: (paths: {path key: path}, options: {option name: value} of every registered
    `Option`) -> an evaluator with `name` and `run(embedder) -> {metric: value}`.
  options: the `Option`s it reads (several evaluators may declare the same one).
  columns: (column title, metric key) pairs of the summary table.
  in_run: whether a training run may list it in config.eval.suite.
  item_count: (a result dict, one of its metric keys) -> how many items the metric was
    computed over (results.md's "(n=...)"); default the result's "<name>/num_images".
  """
  name: str
  files: dict
  build: Callable
  columns: tuple = ()
  in_run: bool = True
  item_count: Optional[Callable] = None
  options: tuple = ()

  def count(self, result, key):
    if self.item_count is not None:
      return self.item_count(result, key)
    return result.get(f"{self.name}/num_images")


ENTRIES = {}  # name -> Entry, in registration order


def register(entry):
  """Adds `entry` (its name not taken, its options the same as any other entry's of the same
  name) -> entry."""
  if entry.name in ENTRIES:
    raise ValueError(f"an evaluator named {entry.name!r} is registered already")
  known = options()
  for option in entry.options:
    if option.kind not in OPTION_KINDS and not isinstance(option.kind, tuple):
      raise ValueError(f"option {option.name!r} of {entry.name!r}: kind {option.kind!r}")
    if known.get(option.name, option) != option:
      raise ValueError(f"option {option.name!r} of {entry.name!r} differs from the one "
                       "another evaluator declares under that name")
  ENTRIES[entry.name] = entry
  return entry


def options():
  """{name: `Option`} of every registered evaluator, in registration order."""
  return {o.name: o for entry in ENTRIES.values() for o in entry.options}


def option_values(given=None):
  """{name: value} of every registered option: `given` ones, the others' defaults."""
  given = dict(given or {})
  unknown = sorted(set(given) - set(options()))
  if unknown:
    raise ValueError(f"evaluator options {unknown}: none declares them")
  return {name: given.get(name, o.default) for name, o in options().items()}


def lookup(names):
  """-> the entries of `names`; one line naming the unknown ones and the choices."""
  unknown = [n for n in names if n not in ENTRIES]
  if unknown:
    raise errors.UserError(f"unknown evaluations {unknown}; available: {', '.join(ENTRIES)}")
  return [ENTRIES[n] for n in names]


def default_paths(data_dir):
  """{path key: path} of every registered evaluator's files under `data_dir`."""
  return {key: os.path.join(data_dir, *parts) for entry in ENTRIES.values()
          for key, parts in entry.files.items()}
