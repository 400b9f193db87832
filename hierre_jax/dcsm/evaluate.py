"""DCSM beside the same frozen model's global cosine on the multiple-choice benchmarks ->
results.json and results.md, with the published numbers of DCSM_SPEC section 8 beside ours."""
import json
import os

from hierre_jax import loading
from hierre_jax.common import errors
from hierre_jax.common import locations
from hierre_jax.evaluators import published
from hierre_jax.dcsm import benchmarks
from hierre_jax.dcsm import scoring
from hierre_jax.evaluators import multiple_choice
from hierre_jax.evaluators import retrieval



def usable_items(bench, allow_missing_images, min_images=retrieval.MIN_IMAGES):
  """The items whose image exists; UserError with the count and one example when some are
  missing, unless allowed (the count is then recorded), and then when fewer than
  `min_images` (>= 1) are left, as for retrieval."""
  missing = bench.missing
  if missing and not allow_missing_images:
    raise errors.UserError(
        f"{bench.source}: {len(missing)} of {len(bench.items)} images not found, e.g. "
        f"{missing[0].looked_for!r}; pass --allow_missing_images to score the others (the "
        "count is recorded)")
  items = [item for item in bench.items if item.image]
  if min_images < 1:
    raise errors.UserError(f"--min_images={min_images}: score at least 1 item")
  if missing and len(items) < min_images:
    raise errors.UserError(
        f"{bench.source}: only {len(items)} of {len(bench.items)} items have their image, fewer "
        f"than --min_images={min_images} for a meaningful accuracy; add the images or lower "
        "--min_images knowingly")
  return items


def evaluate(model, scorer_path, names, data_dir, output_dir, allow_missing_images=False,
             release_rewrites=True, dcsm_rewrites=True, column_rule="", batch_size=32,
             min_images=retrieval.MIN_IMAGES):
  """Scores every benchmark of `names` with the global cosine of `model` and, with a
  `scorer_path`, DCSM -> the results dict (also written to output_dir: new, empty, or an
  earlier evaluation of the same model and scorer; apart from every input)."""
  owner = {"writer": "hierre_jax.dcsm evaluate", "model": locations.real(model)
           if os.path.exists(model) else model, "scorer": scorer_path and locations.real(
               scorer_path)}
  errors.require_writable_dir(output_dir, "output folder")
  locations.check_apart([("--output_dir", output_dir)], [
      ("--model", model), ("--scorer", scorer_path), ("--data_dir", data_dir)])
  locations.check_claimable(output_dir, owner, "--output_dir")
  read = {name: benchmarks.read(name, data_dir) for name in names}  # bad files fail first
  items = {name: usable_items(b, allow_missing_images, min_images) for name, b in read.items()}
  for bench in read.values():
    if bench.count_note:
      print(f"warning: {bench.count_note}")
  embedder = loading.embedder(model, image_batch_size=batch_size)
  scorers = {"global_cosine": multiple_choice.GlobalCosine(embedder)}
  choices = {"release_rewrites": release_rewrites, "ties": "reported apart"}
  if scorer_path:
    scorers["dcsm"], info = scoring.load(model, scorer_path, batch_size, column_rule)
    options = scorers["dcsm"].options
    choices.update(column_rule=options.column_rule, functional_rows=options.functional_rows,
                   standardize="each map" if options.per_map else "each item's (1, K, rows, 30)",
                   dcsm_rewrites=dcsm_rewrites, scorer=os.path.abspath(scorer_path),
                   scorer_info=info)
  results = {}
  for name, bench in read.items():
    row = {"source": bench.source, "items_read": len(bench.items),
           "items_expected": bench.expected, "items_used": len(items[name]),
           "missing_images": len(bench.missing), "published": published.DCSM.get(name, {}),
           "notes": [n for n in (bench.count_note, published.DCSM_CAVEATS.get(name)) if n]}
    for label, scorer in scorers.items():
      rewrite = lambda c, bench=bench, dcsm=label == "dcsm": benchmarks.rewrite(
          bench, c, release_rewrites, dcsm and dcsm_rewrites)
      row[label] = multiple_choice.evaluate(scorer, items[name], rewrite, desc=f"{name} {label}")
    results[name] = row
    print(f"{name}: " + "  ".join(f"{label} {row[label]['accuracy']:.4f}" for label in scorers)
          + f"  (chance {row['global_cosine']['chance']:.3f}, {row['items_used']} items)")
  out = {"model": model, "choices": choices, "benchmarks": results}
  locations.claim(output_dir, owner, "--output_dir")
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(markdown(out))
  print(f"wrote {os.path.join(output_dir, 'results.json')} and "
        f"{os.path.join(output_dir, 'results.md')}")
  return out


def markdown(out):
  """The results as Markdown: accuracy % with ties apart, the items found against the count
  distributed, published numbers beside with what differs in method, and per-group
  accuracies where a benchmark names groups."""
  labels = [k for k in ("global_cosine", "dcsm") if any(k in r for r in
                                                        out["benchmarks"].values())]
  head = ["benchmark", "items found (expected)", "missing images", "scored", "chance"] + [
      f"{label} (ties)" for label in labels] + ["published"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  notes, groups = [], []
  for name, r in out["benchmarks"].items():
    expected = "-" if r["items_expected"] is None else str(r["items_expected"])
    cells = [name, f"{r['items_read']} ({expected})", str(r["missing_images"]),
             str(r["items_used"]), f"{100 * r['global_cosine']['chance']:.1f}"]
    cells += [f"{100 * r[label]['accuracy']:.2f} ({r[label]['ties']})" for label in labels]
    cells.append(", ".join(f"{k} {v}" for k, v in r["published"].items()) or "-")
    lines.append("| " + " | ".join(cells) + " |")
    notes += [f"- {name}: {note}" for note in r["notes"]]
    for group in r["global_cosine"].get("by_group", {}):
      groups.append(f"| {name} | {group} | {r['global_cosine']['by_group'][group]['items']} | "
                    + " | ".join(f"{100 * r[label]['by_group'][group]['accuracy']:.2f}"
                                 for label in labels) + " |")
  choices = ", ".join(f"{k}={v}" for k, v in out["choices"].items() if k != "scorer_info")
  text = f"Model: {out['model']}\n\nChoices: {choices}\n\n" + "\n".join(lines) + "\n"
  if notes:
    text += "\nNotes:\n" + "\n".join(notes) + "\n"
  if groups:
    text += ("\n| benchmark | group | items | " + " | ".join(labels) + " |\n|"
             + "---|" * (3 + len(labels)) + "\n" + "\n".join(groups) + "\n")
  return text
