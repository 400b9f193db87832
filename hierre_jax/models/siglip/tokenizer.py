"""SigLIP tokenisation: every text padded to the checkpoint's text length, on the right.

SigLIP was trained on texts padded to 64 (16 for so400m-patch14-224) with pad = eos, and its
text tower attends to the pads and pools the last position: the padding is part of the
input (FAMILIES_SPEC section 2). transformers stopped padding by default, and SigLIP 2's
tokenizer class pads on the LEFT: `MaxLengthTokenizer` always pads to the length, right.
The RE root "" is then `length` x eos. SigLIP's tokenizer lower-cases and strips
punctuation, so a punctuation-only text becomes the root itself: such texts are logged.
SigLIP 2's hub folders name Gemma's tokenizer, which keeps case, though SigLIP 2 was trained
on lower-cased text: texts are lower-cased for it (`LOWER_CASED_CLASSES`).
"""
import functools
import io
import json
import logging
import os

import transformers

# Files of a SigLIP tokenizer: SentencePiece (SigLIP) or tokenizer.json (SigLIP 2's Gemma).
FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# SigLIP 2's hub folders name the Gemma tokenizer, which keeps case; SigLIP 2 was trained on
# lower-cased text (transformers' Siglip2Tokenizer is Gemma's with a lower-casing normaliser).
LOWER_CASED_CLASSES = ("GemmaTokenizer", "GemmaTokenizerFast", "Siglip2Tokenizer")


class MaxLengthTokenizer:
  """A transformers tokenizer whose calls always truncate and right-pad to `length`.

  `__call__(texts, **ignored)` -> {"input_ids": lists of exactly `length` ids}; the
  max_length asked by a caller is ignored: the model's length is the only right one.
  """

  def __init__(self, tokenizer, length, lower_case=False):
    self.tokenizer = tokenizer
    self.length = length
    self.lower_case = lower_case  # texts lower-cased first (SigLIP 2's training)
    self.pad_token_id = tokenizer.pad_token_id

  def __call__(self, text, **unused):
    texts = [text] if isinstance(text, str) else list(text)
    if self.lower_case:
      texts = [t.lower() for t in texts]
    out = self.tokenizer(texts, padding="max_length", truncation=True,
                         max_length=self.length, padding_side="right")
    ids = [list(x) for x in out["input_ids"]]
    canonical = getattr(self.tokenizer, "canonicalize_text", None)
    if canonical is not None:
      empty = [t for t in texts if t and not canonical(t)]
      if empty:
        logging.warning("%d text(s) are empty once lower-cased and stripped of punctuation "
                        "(e.g. %r): their embedding is the RE root's", len(empty), empty[0])
    return {"input_ids": ids[0] if isinstance(text, str) else ids}


def tokenizer_class(model_dir):
  """The tokenizer_class its tokenizer_config.json names ('' where it names none)."""
  path = os.path.join(model_dir, "tokenizer_config.json")
  if not os.path.exists(path):
    return ""
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("tokenizer_class") or ""


@functools.lru_cache(maxsize=8)
def load_tokenizer(model_dir, length):
  """`MaxLengthTokenizer` of the tokenizer files of `model_dir`, lower-casing where the
  folder is SigLIP 2's (its tokenizer_config names Gemma's tokenizer, LOWER_CASED_CLASSES);
  names the missing files."""
  if not any(os.path.exists(os.path.join(model_dir, n)) for n in FILES[:2]):
    raise FileNotFoundError(f"{model_dir}: no SigLIP tokenizer files (spiece.model or "
                            "tokenizer.json)")
  name = tokenizer_class(model_dir)
  lower = name in LOWER_CASED_CLASSES
  if lower:
    logging.info("%s: %s (SigLIP 2): texts are lower-cased as SigLIP 2 was trained",
                 model_dir, name)
  return MaxLengthTokenizer(transformers.AutoTokenizer.from_pretrained(model_dir), length,
                            lower_case=lower)


def train_spiece(texts, out_dir, vocab_size):
  """Trains a SentencePiece unigram model as T5's ids (pad 0, eos 1, unk 2, no bos) on
  `texts` -> out_dir/spiece.model, and a tokenizer_config.json naming SiglipTokenizer."""
  import sentencepiece  # pylint: disable=g-import-not-at-top
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
      hard_vocab_limit=False, minloglevel=2)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "spiece.model"), "wb") as f:
    f.write(model.getvalue())
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "SiglipTokenizer", "model_max_length": 64,
               "pad_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=1)
