"""The README and the guide as a reader follows them: every relative link resolves, and
every flag their commands pass to an entry point exists in that command's --helpfull."""
import concurrent.futures
import glob
import os
import re
import subprocess
import sys

import pytest

from runs import ROOT, python_env

DOCS = [os.path.join(ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
ENTRY_POINTS = ("train", "evaluate", "ablations", "hierarchy", "dcsm", "contrastive")


def links(path):
  """(line, target) of each relative markdown link of a file, code blocks left out."""
  out, fenced = [], False
  for n, line in enumerate(open(path, encoding="utf-8"), 1):
    if line.lstrip().startswith("```"):
      fenced = not fenced
    if not fenced:
      out += [(n, t) for t in re.findall(r"\]\(([^)\s]+)\)", line)
              if not re.match(r"^(https?:|mailto:|#)", t)]
  return out


def test_every_relative_link_resolves():
  broken = [f"{os.path.relpath(path, ROOT)}:{n}: {target}" for path in DOCS
            for n, target in links(path)
            if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#")[0]))]
  assert not broken, "\n".join(broken)


def commands(path):
  """(entry point, set of flag names) of each `python -m hierre_jax.<entry point>` command in
  the code blocks of a file (continuation lines joined)."""
  text = open(path, encoding="utf-8").read()
  out = []
  for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
    for command in block.replace("\\\n", " ").splitlines():
      found = re.search(r"python -m hierre_jax\.(\w+)", command)
      if found and found.group(1) in ENTRY_POINTS:
        rest = command.split("#")[0][found.end():]
        names = {f.split("=")[0] for f in re.findall(r"(?<!\S)--([\w.]+(?:=\S*)?)", rest)}
        out.append((found.group(1), {n for n in names if not n.startswith("config.")}))
  return out


def helpfull(entry_point):
  """The flag names `python -m hierre_jax.<entry_point> --helpfull` lists ([no] included)."""
  run = subprocess.run([sys.executable, "-m", f"hierre_jax.{entry_point}", "--helpfull"],
                       capture_output=True, text=True, env=python_env(1), cwd=ROOT, timeout=300)
  names = set()
  for prefix, name in re.findall(r"^\s+--(\[no\])?([\w.]+):", run.stdout, re.M):
    names |= {name, f"no{name}"} if prefix else {name}
  assert names, f"{entry_point} --helpfull printed no flags: {run.stderr[-500:]}"
  return names


def test_every_flag_the_docs_use_exists():
  used = [(os.path.relpath(path, ROOT), entry, flags) for path in DOCS
          for entry, flags in commands(path)]
  assert {entry for _, entry, _ in used} >= {"train", "evaluate", "dcsm"}
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    known = dict(zip(ENTRY_POINTS, pool.map(helpfull, ENTRY_POINTS)))
  unknown = [f"{path}: python -m hierre_jax.{entry} --{flag}" for path, entry, flags in used
             for flag in sorted(flags - known[entry])]
  assert not unknown, "\n".join(unknown)
