"""Token id lists of any family's tokenizer -> padded arrays: truncation, length buckets
(fewer distinct shapes, fewer compilations), right padding."""
import numpy as np


def tokenize(tokenizer, texts, max_length):
  """Strings -> list of id lists with the tokenizer's special tokens, truncated to
  `max_length` (the model family's `max_length`)."""
  return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def bucket_length(n, multiple, max_length):
  """Smallest multiple of `multiple` >= n, capped at `max_length` (limits recompiles)."""
  return min(-(-n // multiple) * multiple, max_length)


def pad(id_lists, length, pad_id):
  """List of id lists -> [N, length] int32 array, right-padded with `pad_id`."""
  out = np.full((len(id_lists), length), pad_id, np.int32)
  for i, ids in enumerate(id_lists):
    if len(ids) > length:
      raise ValueError(f"text {i} has {len(ids)} tokens, more than the padded length {length}")
    out[i, :len(ids)] = ids
  return out
