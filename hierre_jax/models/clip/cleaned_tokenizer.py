"""The OpenAI CLIP BPE after the text cleaning of OpenAI's own tokenizer, which MERU and
open_clip keep (FAMILIES_SPEC 1.1, 3): ftfy's `fix_text`, HTML entities unescaped twice,
whitespace collapsed and stripped (lower-casing is the BPE's own). transformers'
CLIPTokenizer does none of the first three: "a &amp; b" would keep "amp"."""
import functools
import html
import json
import os
import re
import tempfile

import ftfy
import transformers

from hierre_jax.models.clip import tokenizer as clip_tokenizer


def clean(text):
  """A text as OpenAI's tokenizer cleans it before the BPE, lower-cased as it lower-cases:
  Python's str.lower (a word-final capital sigma becomes the final sigma; transformers'
  own lower-casing does not do that)."""
  text = html.unescape(html.unescape(ftfy.fix_text(text)))
  return re.sub(r"\s+", " ", text).strip().lower()


class CleanedTokenizer(transformers.CLIPTokenizer):
  """transformers' CLIPTokenizer whose calls clean each text first (`clean`). Built with
  split_special_tokens=True (open_clip's tokenizer), a literal "<|endoftext|>" in a text is
  read as its characters: open_clip's special tokens are other strings; OpenAI's own
  tokenizer (MERU's) reads it as the special token, as transformers does by default."""

  def __call__(self, text=None, *args, **kwargs):
    if isinstance(text, str):
      text = clean(text)
    elif text is not None:
      text = [clean(t) for t in text]
    return super().__call__(text, *args, **kwargs)


# Beside a CLIP directory's tokenizer files: its texts are cleaned (`clean`) before the BPE,
# as the open_clip model it was exported from cleans them. transformers ignores the file.
CLEANING_FILE = "text_cleaning.json"


def write_cleaning_record(out_dir, literal_special_tokens):
  """Writes out_dir/CLEANING_FILE: hierre_jax reads the directory with `CleanedTokenizer`
  (`literal_special_tokens`: split_special_tokens, as open_clip reads texts)."""
  with open(os.path.join(out_dir, CLEANING_FILE), "w", encoding="utf-8") as f:
    json.dump({"clean": "openai", "steps": ["ftfy.fix_text", "html.unescape x2",
                                            "whitespace collapsed", "str.lower"],
               "literal_special_tokens": literal_special_tokens}, f, indent=1)


def cleaning_record(model_dir):
  """A CLIP directory's CLEANING_FILE as a dict, None where it has none."""
  path = os.path.join(model_dir, CLEANING_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@functools.lru_cache(maxsize=2)
def bpe_tokenizer(literal_special_tokens=False):
  """CleanedTokenizer on the OpenAI CLIP vocabulary hierre_jax ships (`CleanedTokenizer` on
  literal special tokens: open_clip's reading)."""
  with tempfile.TemporaryDirectory() as d:
    clip_tokenizer.write_clip_vocab(d)
    return CleanedTokenizer.from_pretrained(d, split_special_tokens=literal_special_tokens)
