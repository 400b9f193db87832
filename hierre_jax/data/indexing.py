"""Distinct items in first-appearance order, with the index of each occurrence among them."""
import numpy as np


def distinct(texts):
  """Texts in order of first appearance, without repeats (string identity)."""
  return list(dict.fromkeys(texts))


def index_rows(rows):
  """Rows of texts -> (distinct texts, [R, K] index of each row's texts among them)."""
  texts = distinct(t for row in rows for t in row)
  index = {t: i for i, t in enumerate(texts)}
  return texts, np.array([[index[t] for t in row] for row in rows])
