"""CLIP BPE tokenisation, offline: transformers' CLIPTokenizer from a checkpoint directory.

The OpenAI BPE merges ship with the package (`assets/bpe_simple_vocab_16e6.txt.gz`),
so `write_clip_vocab(dir)` can give any locally built checkpoint its tokenizer
files without a download.
"""
import functools
import gzip
import json
import os

import transformers

MAX_LENGTH = 77
BPE_MERGES = os.path.join(os.path.dirname(__file__), "..", "..", "assets",
                          "bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 49152 - 256 - 2


def bytes_to_unicode():
  """GPT-2/CLIP byte -> printable character table, in vocabulary order (printable bytes first)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  others = [b for b in range(256) if b not in printable]
  table = {b: chr(b) for b in printable}
  table.update({b: chr(256 + n) for n, b in enumerate(others)})
  return table


def write_clip_vocab(out_dir):
  """Writes vocab.json, merges.txt and tokenizer_config.json of the OpenAI CLIP BPE."""
  with gzip.open(BPE_MERGES, "rt", encoding="utf-8") as f:
    merges = f.read().split("\n")[1:NUM_MERGES + 1]
  base = list(bytes_to_unicode().values())
  vocab = base + [c + "</w>" for c in base] + ["".join(m.split()) for m in merges]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH,
               "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, f, indent=1)


@functools.lru_cache(maxsize=8)
def load_tokenizer(model_dir):
  """transformers' CLIP tokenizer from `model_dir`; names the missing files if absent."""
  has = lambda name: os.path.exists(os.path.join(model_dir, name))
  if not has("tokenizer.json") and not (has("vocab.json") and has("merges.txt")):
    missing = [n for n in ("vocab.json", "merges.txt") if not has(n)]
    raise FileNotFoundError(
        f"{model_dir}: no CLIP tokenizer files (need tokenizer.json, or vocab.json and "
        f"merges.txt; missing {missing}). "
        "hierre_jax.models.clip.tokenizer.write_clip_vocab(dir) writes the OpenAI CLIP "
        "vocabulary.")
  return transformers.CLIPTokenizer.from_pretrained(model_dir)
