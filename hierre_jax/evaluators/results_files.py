"""The suite's files in an output folder: results.json (one object per model, metrics named
`<benchmark>/<metric>`, each with its interval, and each later model's paired differences to
the first), items.json (every metric's per-item values, which the paired differences and a
resumed run need), both sealed and verified when read back; results.md (`tables`) and
results.png (`plot`), drawn anew from them at every write.

results.json and items.json change together: both are written whole beside their places
(`<name>.next`), then the seal of the new pair replaces the old one, then each file its
old version. A writer killed before the seal leaves the old pair, which verifies; one
killed after it leaves new files that `read_results` puts in place (only those whose
digest is the seal's) before it verifies."""
import json
import os

from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax.evaluators import published
from hierre_jax.common import sealed
from hierre_jax.evaluators import plot
from hierre_jax.evaluators import tables
from hierre_jax.evaluators import uncertainty

RESULTS, ITEMS, SEAL = "results.json", "items.json", "results.sealed.json"
NEXT = ".next"  # a new version written beside its place (`write`)
# Metrics compared model against model (beside the summary's columns).
COMPARED = tuple(k for _, k in tables.TABLE) + ("hierarcaps/beyond_length/tau_d",)


def paired(results, seed=uncertainty.SEED):
  """The results with "paired_differences" in each model after the first: {"to": the first
  model, metric: {"difference", "ci95"}} for every COMPARED metric both have the items of."""
  out = [{k: v for k, v in r.items() if k != "paired_differences"} for r in results]
  if len(out) < 2:
    return out
  first = out[0].get("items", {})
  for r in out[1:]:
    diffs = {"to": out[0]["model"]}
    for key in COMPARED:
      a, b = r.get("items", {}).get(key), first.get(key)
      if a is not None and b is not None and a.n == b.n and a.statistic == b.statistic:
        d, ci = uncertainty.paired_difference(a, b, seed)
        diffs[key] = {"difference": d, "ci95": ci}
    r["paired_differences"] = diffs
  return out


def read_results(output_dir):
  """The result dicts of output_dir/results.json with their "items" ([] where there is
  none); files whose seal does not verify, or that do not parse, are refused naming them."""
  path = os.path.join(output_dir, RESULTS)
  if not os.path.exists(path):
    return []
  try:
    finish_write(output_dir)
    sealed.verify(output_dir, SEAL)
    with open(path) as f:
      results = json.load(f)
    if not (isinstance(results, list) and all(isinstance(r, dict) and "model" in r
                                              for r in results)):
      raise ValueError("not a list of results with a model each")
    with open(os.path.join(output_dir, ITEMS)) as f:
      items = json.load(f)
    for r in results:
      r["items"] = {k: uncertainty.Items.from_json(v) for k, v in items.get(r["model"], {}).items()}
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.DataError(f"{path}: unreadable results ({e}); move it away or choose another "
                           "--output_dir") from e
  return results


def finish_write(output_dir):
  """Puts in place the new versions (`<name>.next`) a killed `write` left after sealing
  them: each whose digest is the one the seal lists (a version left before the seal was
  written is not: it stays beside, and the next write replaces it)."""
  pending = [n for n in (ITEMS, RESULTS) if os.path.isfile(os.path.join(output_dir, n + NEXT))]
  if not pending:
    return
  try:
    with open(os.path.join(output_dir, SEAL)) as f:
      listed = dict(json.load(f)["files"])
  except (OSError, ValueError, KeyError, TypeError):
    return  # no readable seal: `sealed.verify` names it
  for name in pending:
    new = os.path.join(output_dir, name + NEXT)
    if sealed.file_digest(new) == listed.get(name):
      os.replace(new, os.path.join(output_dir, name))


def write(results, output_dir, references=()):
  """-> paths of results.json and results.md in `output_dir`, with the published rows of
  each of `references` (keys of published.SUITE; a string: one) under ours, the paired
  differences to the first model (`paired`), items.json and the seal of both; and
  results.png (`plot.results`), drawn anew from `results` whenever HierarCaps
  was evaluated (an earlier one removed when it is not). Each file is replaced whole."""
  references = [references] if isinstance(references, str) else list(references)
  unknown = [r for r in references if r and r not in published.SUITE]
  if unknown:
    raise ValueError(f"reference {unknown[0]!r}: use one of {', '.join(published.SUITE)}")
  papers = dict(row for r in references if r for row in published.SUITE[r].items())
  results = paired(results)
  plain = [{k: v for k, v in r.items() if k != "items"} for r in results]
  os.makedirs(output_dir, exist_ok=True)
  json_path = os.path.join(output_dir, RESULTS)
  items_path = os.path.join(output_dir, ITEMS)
  locations.write_file(json_path + NEXT, lambda f: json.dump(plain, f, indent=1))
  locations.write_file(items_path + NEXT, lambda f: json.dump(
      {r["model"]: {k: v.to_json() for k, v in r.get("items", {}).items()} for r in results},
      f))
  sealed.seal(output_dir, [RESULTS + NEXT, ITEMS + NEXT], manifest=SEAL,
              names_as={RESULTS + NEXT: RESULTS, ITEMS + NEXT: ITEMS})
  os.replace(items_path + NEXT, items_path)
  os.replace(json_path + NEXT, json_path)
  md_path = locations.write_file(os.path.join(output_dir, "results.md"),
                                 lambda f: f.write(tables.markdown(plain, papers.items())))
  png = os.path.join(output_dir, "results.png")
  if any("hierarcaps/tau_d" in r for r in plain):
    try:
      plot.results(plain, papers, png)
    except OSError as e:
      raise OSError(e.errno, e.strerror, png) from e
  elif os.path.exists(png):
    os.remove(png)  # no HierarCaps result: a picture of earlier results would be stale
  return json_path, md_path
