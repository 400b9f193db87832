"""What caption length alone explains of HierarCaps' depth order (docs/evaluation_suite.md,
"Baselines and length control").

In HierarCaps a deeper caption is almost always longer: ranking each row's four captions by
token count gives tau_d 0.937 on the test set, above every zero-shot model of the paper.
So a model's tau_d is read beside
  - the length baselines: each caption's token count (the model's own tokenizer) or word
    count as its "radius", scored as the model's radii are;
  - the paper's controlled subsets: rows whose two most general captions have the same
    word count, and rows whose two most specific captions differ by at most four words;
  - order beyond length: each radius minus the mean radius of the test texts with the same
    token count (what length predicts of it), then Kendall's tau-a of each row's residuals
    against depth (ties count 0). A radius that is a function of token count scores exactly
    0; a radius that orders depth among captions of equal length scores above 0.
"""
import numpy as np

# The paper's controlled subsets (supplementary, "text length"): (name, rule on word counts
# [R, 4] of each row's tiers, general to specific).
SUBSETS = {
    "same_general_words": lambda w: w[:, 0] == w[:, 1],
    "close_specific_words": lambda w: np.abs(w[:, 3] - w[:, 2]) <= 4,
}


def word_counts(texts):
  """[N] whitespace-separated words of each text."""
  return np.array([len(t.split()) for t in texts], np.int64)


def token_counts(tokenizer, texts):
  """[N] tokens of each text as `tokenizer` (a transformers-style callable) gives them,
  special tokens included (a constant per text: no effect on any order)."""
  return np.array([len(ids) for ids in tokenizer(list(texts))["input_ids"]], np.int64)


def subset_masks(row_words):
  """{subset name: [R] bool} of rows' word counts [R, 4]."""
  return {name: rule(row_words) for name, rule in SUBSETS.items()}


def residual_after_length(radii, counts):
  """[N] radii minus the mean radius of the texts with the same count: the part of each
  radius that text length does not predict."""
  radii = np.asarray(radii, np.float64)
  _, group, size = np.unique(counts, return_inverse=True, return_counts=True)
  means = np.bincount(group, weights=radii) / size
  out = radii - means[group]
  out[np.abs(out) <= 1e-9 * max(1.0, np.abs(radii).max())] = 0.0  # a group's mean's rounding
  return out


def tau_a_vs_order(values):
  """[R, K] -> [R] Kendall's tau-a of each row against 1..K: concordant pairs minus
  discordant ones over all pairs (a tie counts 0, so a constant row scores 0)."""
  k = values.shape[1]
  i, j = np.triu_indices(k, 1)
  return np.sign(values[:, j] - values[:, i]).sum(1) / len(i)
