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
  """A text as OpenAI's tokenizer cleans it before the BPE."""
  text = html.unescape(html.unescape(ftfy.fix_text(text)))
  return re.sub(r"\s+", " ", text).strip()


class CleanedTokenizer(transformers.CLIPTokenizer):
  """transformers' CLIPTokenizer whose calls clean each text first (`clean`)."""

  def __call__(self, text=None, *args, **kwargs):
    if isinstance(text, str):
      text = clean(text)
    elif text is not None:
      text = [clean(t) for t in text]
    return super().__call__(text, *args, **kwargs)


# Beside a CLIP directory's tokenizer files: its texts are cleaned (`clean`) before the BPE,
# as the open_clip model it was exported from cleans them. transformers ignores the file.
CLEANING_FILE = "text_cleaning.json"


def write_cleaning_record(out_dir):
  """Writes out_dir/CLEANING_FILE: hierre_jax reads the directory with `CleanedTokenizer`."""
  with open(os.path.join(out_dir, CLEANING_FILE), "w", encoding="utf-8") as f:
    json.dump({"clean": "openai", "steps": ["ftfy.fix_text", "html.unescape x2",
                                            "whitespace collapsed"]}, f, indent=1)


def cleans(model_dir):
  """Whether a CLIP directory's texts are cleaned before the BPE (its CLEANING_FILE)."""
  return os.path.exists(os.path.join(model_dir, CLEANING_FILE))


@functools.lru_cache(maxsize=1)
def bpe_tokenizer():
  """CleanedTokenizer on the OpenAI CLIP vocabulary hierre_jax ships."""
  with tempfile.TemporaryDirectory() as d:
    clip_tokenizer.write_clip_vocab(d)
    return CleanedTokenizer.from_pretrained(d)
