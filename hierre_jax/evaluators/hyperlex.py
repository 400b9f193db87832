"""HyperLex graded lexical entailment (SPEC section 5).

Each word goes into the prompt `a picture of a {}`. A pair "WORD1 is a type of WORD2"
scores -ext(emb(WORD2), emb(WORD1)): WORD2 is the more general word, so an entailed
pair has a small exterior angle. Reported: Spearman's rho between the scores and the
human AVG_SCORE over all pairs and over the noun pairs.
"""
import dataclasses
import os

import numpy as np
import scipy.stats

from hierre_jax.common.errors import DataError
from hierre_jax.evaluators import registry
from hierre_jax.evaluators import uncertainty

PROMPT = "a picture of a {}"
COLUMNS = ("WORD1", "WORD2", "POS", "TYPE", "AVG_SCORE")


@dataclasses.dataclass
class Pairs:
  word1: list  # [N] str, the more specific word
  word2: list  # [N] str, the more general word
  pos: np.ndarray  # [N] str: N (noun) or V (verb)
  score: np.ndarray  # [N] float AVG_SCORE, 0-6


def read_pairs(path):
  """hyperlex-all.txt (space separated, header `WORD1 WORD2 POS TYPE AVG_SCORE ...`)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such HyperLex file")
  word1, word2, pos, score = [], [], [], []
  with open(path, encoding="utf-8") as f:
    header = f.readline().split()
    if tuple(header[:len(COLUMNS)]) != COLUMNS:
      raise DataError(f"{path}: line 1: expected a header starting with {' '.join(COLUMNS)}, "
                      f"got {' '.join(header[:6])!r}")
    for line_number, line in enumerate(f, start=2):
      cells = line.split()
      if not cells:
        continue
      if len(cells) < len(COLUMNS):
        raise DataError(f"{path}: line {line_number}: expected at least {len(COLUMNS)} "
                        f"columns {' '.join(COLUMNS)}, got {len(cells)}: {line.strip()!r}")
      try:
        value = float(cells[4])
      except ValueError:
        raise DataError(f"{path}: line {line_number}: AVG_SCORE {cells[4]!r} is not a "
                        "number") from None
      word1.append(cells[0])
      word2.append(cells[1])
      pos.append(cells[2])
      score.append(value)
  if not score:
    raise DataError(f"{path}: no pairs")
  return Pairs(word1, word2, np.array(pos), np.array(score))


class HyperLex:
  """rho_all and rho_nouns of one model on the HyperLex pairs of `path`."""

  name = "hyperlex"

  def __init__(self, path, prompt=PROMPT):
    self.path, self.prompt = path, prompt
    self.pairs = read_pairs(path)

  def scores(self, embedder):
    """-> [N] -ext(emb(WORD2), emb(WORD1)) of every pair."""
    p = self.pairs
    words = list(dict.fromkeys(p.word1 + p.word2))
    index = {w: i for i, w in enumerate(words)}
    feats, root = embedder.texts([self.prompt.format(w) for w in words])
    specific = feats[[index[w] for w in p.word1]]
    general = feats[[index[w] for w in p.word2]]
    return -np.asarray(embedder.geometry.exterior_angle(general, specific, root), np.float64)

  def run(self, embedder):
    """rho_all and rho_nouns, and the same of the length baseline (`length_scores`), with
    their items (word pairs) for intervals."""
    scores, p = self.scores(embedder), self.pairs
    nouns = p.pos == "N"
    length = self.length_scores()
    items = {"rho_all": (scores, p.score), "rho_nouns": (scores[nouns], p.score[nouns]),
             "baseline/length/rho_all": (length, p.score),
             "baseline/length/rho_nouns": (length[nouns], p.score[nouns])}
    rho = {k: float(scipy.stats.spearmanr(*v).statistic) for k, v in items.items()}
    return {**rho, "num_pairs": len(scores), "num_noun_pairs": int(nouns.sum()),
            "prompt": self.prompt,
            "items": {k: uncertainty.Items("spearman", v) for k, v in items.items()}}

  def length_scores(self):
    """[N] the trivial baseline: characters of the specific word minus those of the general
    one (a general word tends to be the shorter); no model."""
    p = self.pairs
    return np.array([len(a) - len(b) for a, b in zip(p.word1, p.word2)], np.float64)


registry.register(registry.Entry(
    "hyperlex", files={"hyperlex": ("hyperlex", "hyperlex-all.txt")},
    build=lambda paths, options: HyperLex(paths["hyperlex"]),
    columns=(("HyperLex rho_all", "hyperlex/rho_all"), ("rho_nouns", "hyperlex/rho_nouns")),
    item_count=lambda result, key: result.get(  # word pairs
        "hyperlex/num_noun_pairs" if key.endswith("nouns") else "hyperlex/num_pairs")))
