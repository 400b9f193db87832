"""Evaluators by name. Each evaluator module declares what the suite needs of it in an
`Entry` and `register`s it: its name, the files it reads under a data root laid out like
the project's ../shared, how to build it, its columns in the Table-1-shaped summary, and
whether a training run may list it. `hierre_jax.evaluators` imports the modules in the
order of the summary's columns; `suite` looks names up here.
"""
import dataclasses
import os
from typing import Callable, Optional

from hierre_jax.common import errors


@dataclasses.dataclass(frozen=True)
class Options:
  """The choices an evaluator may take from the command line or a config."""
  allow_missing_images: bool  # retrieval: evaluate on the images present
  min_images: int  # ... and on at least this many
  tau_d_ties: str = "release"  # HierarCaps tau_d's ties (`hierarcaps.HierarCaps`)
  tfds_data_dir: Optional[str] = None  # CIFAR from tensorflow-datasets (None: tfds' own)
  traversal_root: str = ""  # HierarCaps: MERU's traversal on the sphere to this stored root


@dataclasses.dataclass(frozen=True)
class Entry:
  """One evaluator as the suite sees it.

  files: {path key: its place under the data root, as path parts}; each key is a flag of
    the entry points that run the suite (`--<key>`) and a key of config.eval.paths.
  build: (paths: {path key: path}, `Options`) -> an evaluator with `name` and
    `run(embedder) -> {metric: value}`.
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

  def count(self, result, key):
    if self.item_count is not None:
      return self.item_count(result, key)
    return result.get(f"{self.name}/num_images")


ENTRIES = {}  # name -> Entry, in registration order


def register(entry):
  """Adds `entry` (its name not taken) -> entry."""
  if entry.name in ENTRIES:
    raise ValueError(f"an evaluator named {entry.name!r} is registered already")
  ENTRIES[entry.name] = entry
  return entry


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
