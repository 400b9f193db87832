"""The tables of results.md: the Table-1-shaped summary (our rows with 95% intervals and item
counts, the length baselines as rows, the paper's rows), what length explains of HierarCaps'
order, radius and recall by depth, and each model's paired difference to the first."""
from hierre_jax.evaluators import registry

# (column title, metric key) of the Table-1-shaped summary, in registration order.
TABLE = tuple(column for entry in registry.ENTRIES.values() for column in entry.columns)

# Trivial baselines shown as rows: (title, {summary key: the result key holding the
# baseline's number}); "{family}" is filled in where the baseline depends on the tokenizer.
BASELINES = (
    ("baseline: token count ({family} tokenizer)",
     {"hierarcaps/tau_d": "hierarcaps/baseline/tokens/tau_d"}),
    ("baseline: word count", {"hierarcaps/tau_d": "hierarcaps/baseline/words/tau_d"}),
    ("baseline: length difference of the words",
     {"hyperlex/rho_all": "hyperlex/baseline/length/rho_all",
      "hyperlex/rho_nouns": "hyperlex/baseline/length/rho_nouns"}),
)
COUNT_KEYS = ("hierarcaps/num_images", "hierarcaps/num_rows", "hyperlex/num_pairs",
              "hyperlex/num_noun_pairs")
SUBSET_TITLES = {"same_general_words": "tiers 1-2 same word count",
                 "close_specific_words": "tiers 3-4 within 4 words"}
DEPTHS = (1, 2, 3, 4)

COUNT_LEGEND = ("n: the items each number was computed over (HierarCaps: rows for tau_d, "
                "images for P and R; HyperLex: word pairs; the others: images or queries), 'of "
                "N' where only part of the benchmark's images were present; [lo, hi]: the "
                "seeded percentile-bootstrap 95% interval over those items")


def has_results(result, benchmark):
  """Whether a result dict holds metrics of `benchmark` (an evaluator's name)."""
  return any(k.startswith(f"{benchmark}/") for k in result)


def item_count(result, key):
  """'n' or 'n of N': how many items metric `key` of a result was computed over (its
  evaluator's `registry.Entry.count`; N: how many its data names, where fewer were present);
  '' when the result records none."""
  benchmark = key.split("/")[0]
  n = registry.ENTRIES[benchmark].count(result, key) if benchmark in registry.ENTRIES else None
  annotated = result.get(f"{benchmark}/num_annotated_images")
  if not n:
    return ""
  return f"{n} of {annotated}" if annotated and annotated != n else f"{n}"


def number(r, key, counts=True):
  """A result's number with its interval (and item count): '0.937 [0.929, 0.945] (n=1000)'."""
  if not isinstance(r.get(key), (int, float)):
    return ""
  ci = r.get(f"{key}_ci95")
  n = item_count(r, key) if counts else ""
  return (f"{r[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
          + (f" (n={n})" if n else ""))


def baseline_rows(results):
  """[(title, row)] of the BASELINES the results hold, one per title (a token count per
  tokenizer family)."""
  rows = {}
  for title, keys in BASELINES:
    for r in results:
      if not any(source in r for source in keys.values()):
        continue
      name = title.format(family=r.get("family", "?"))
      row = {k: r[k] for k in COUNT_KEYS if k in r}
      for key, source in keys.items():
        if source in r:
          row[key] = r[source]
          row[f"{key}_ci95"] = r.get(f"{source}_ci95")
      rows.setdefault(name, row)
  return list(rows.items())


def markdown_table(results, papers=()):
  """One row per model, the length baselines' rows, then one per (name, metrics) pair of
  `papers`; the columns of TABLE that any row has, of the benchmarks our rows evaluated (a
  published number of a benchmark not evaluated is left out; MERU's traversal P/R stay
  beside sphere models). Our cells show the interval and item count behind each number."""
  papers = list(papers)
  rows = [(r["model"], r) for r in results] + baseline_rows(results) + papers
  evaluated = lambda key: any(has_results(r, key.split("/")[0]) for r in results)
  columns = [(title, key) for title, key in TABLE
             if any(key in r for _, r in rows) and evaluated(key)]
  lines = ["| model | " + " | ".join(t for t, _ in columns) + " |",
           "| --- |" + " --- |" * len(columns)]
  lines += [f"| {name} | " + " | ".join(number(r, k) for _, k in columns) + " |"
            for name, r in rows]
  return "\n".join(lines) + "\n\n" + COUNT_LEGEND + "\n"


def length_table(results):
  """HierarCaps beside what length explains (`length_control`): tau_d, the token-count
  baseline, order beyond length, and tau_d/P/R on the paper's controlled subsets."""
  ours = [r for r in results if "hierarcaps/beyond_length/tau_d" in r]
  if not ours:
    return ""
  subsets = [s for s in SUBSET_TITLES if any(f"hierarcaps/subset/{s}/tau_d" in r for r in ours)]
  head = ["tau_d", "token-count tau_d", "beyond length"] + [
      f"{SUBSET_TITLES[s]}: {m}" for s in subsets for m in ("tau_d", "P", "R")]
  lines = ["| model | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
  for r in ours:
    cells = [number(r, f"hierarcaps/{k}", False) for k in
             ("tau_d", "baseline/tokens/tau_d", "beyond_length/tau_d")]
    for s in subsets:
      n = r.get(f"hierarcaps/subset/{s}/num_rows")
      cells += [number(r, f"hierarcaps/subset/{s}/{m}", False) + (f" (n={n})" if m == "tau_d"
                                                                   and n else "")
                for m in ("tau_d", "precision", "recall")]
    lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
  return ("\n".join(lines) + "\n\nbeyond length: Kendall's tau-a of each radius minus the mean "
          "radius of the test texts with its token count (0 for a radius that is a function "
          "of length; docs/evaluation_suite.md)\n")


def depth_table(results):
  """Mean radius and recall of each HierarCaps depth (tier), per model."""
  ours = [r for r in results if "hierarcaps/depth/1/mean_radius" in r]
  if not ours:
    return ""
  head = [f"radius d{d}" for d in DEPTHS] + [f"recall d{d}" for d in DEPTHS]
  lines = ["| model | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
  for r in ours:
    lines.append(f"| {r['model']} | " + " | ".join(
        [number(r, f"hierarcaps/depth/{d}/mean_radius", False) for d in DEPTHS]
        + [number(r, f"hierarcaps/depth/{d}/recall", False) for d in DEPTHS]) + " |")
  return "\n".join(lines) + "\n"


def differences_table(results):
  """Each model's paired difference to the first model (`results_files.paired`), '~' where
  the interval holds 0 (no detectable difference)."""
  ours = [r for r in results if r.get("paired_differences")]
  if not ours:
    return ""
  to = ours[0]["paired_differences"]["to"]
  keys = [k for _, k in TABLE + (("", "hierarcaps/beyond_length/tau_d"),)
          if any(k in r["paired_differences"] for r in ours)]
  lines = [f"| model minus {to} | " + " | ".join(keys) + " |",
           "| --- |" + " --- |" * len(keys)]
  def cell(d):
    if not d:
      return ""
    lo, hi = d["ci95"]
    return f"{d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]" + (" ~" if lo <= 0 <= hi else "")
  for r in ours:
    lines.append(f"| {r['model']} | " + " | ".join(cell(r["paired_differences"].get(k))
                                                   for k in keys) + " |")
  return ("\n".join(lines) + "\n\nPaired bootstrap over the same resampled items; ~: the "
          "interval holds 0, no detectable difference; "
          f"{sum(len(r['paired_differences']) - 1 for r in ours)} comparisons in this table\n")


def markdown(results, papers=()):
  """results.md: every table that the results have, each under its heading."""
  sections = [("Results", markdown_table(results, papers)),
              ("HierarCaps and caption length", length_table(results)),
              ("HierarCaps by depth", depth_table(results)),
              ("Paired differences", differences_table(results))]
  return "\n".join(f"## {title}\n\n{body}" for title, body in sections if body)
