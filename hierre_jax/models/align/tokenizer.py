"""ALIGN's WordPiece tokenizer (uncased BERT, at most 64 tokens), through transformers'
BertTokenizer from a checkpoint directory; and, for checkpoints built offline, a small
vocabulary with bert-base-uncased's special ids in which every lowercase word of letters
and digits has a spelling (whole words where listed, by default those of the bundled
HierarCaps sample, else one piece per character)."""
import csv
import functools
import json
import os
import re
import string

import transformers

MAX_LENGTH = 64
SPECIALS = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]",
                                                               "[MASK]"]
CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation
BUNDLED_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "assets",
                              "hierarcaps_sample.csv")


def sample_words():
  """The distinct lowercase words of the bundled HierarCaps sample's captions, in order."""
  with open(BUNDLED_SAMPLE, encoding="utf-8") as f:
    captions = " ".join(row["positive"] + " " + row["negative"] for row in csv.DictReader(f))
  return list(dict.fromkeys(re.findall(r"[a-z0-9]+", captions.lower())))


def write_vocab(out_dir, words=None):
  """Writes vocab.txt ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then every
  character, its '##' continuation, and `words`, default `sample_words()`) and
  tokenizer_config.json -> vocabulary size."""
  words = sample_words() if words is None else words
  pieces = list(CHARACTERS) + ["##" + c for c in string.ascii_lowercase + string.digits]
  vocab = SPECIALS + list(dict.fromkeys(pieces + [w.lower() for w in words
                                                   if w.lower() not in pieces]))
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True,
               "model_max_length": MAX_LENGTH}, f, indent=1)
  return len(vocab)


@functools.lru_cache(maxsize=8)
def load_tokenizer(model_dir):
  """transformers' BERT WordPiece tokenizer of `model_dir`; names the missing files."""
  if not any(os.path.exists(os.path.join(model_dir, n)) for n in ("vocab.txt", "tokenizer.json")):
    raise FileNotFoundError(f"{model_dir}: no ALIGN tokenizer files (need vocab.txt or "
                            "tokenizer.json, as the model's hub repository has them)")
  return transformers.BertTokenizer.from_pretrained(model_dir)
