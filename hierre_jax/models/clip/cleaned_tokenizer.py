"""The OpenAI CLIP BPE after the text cleaning of OpenAI's own tokenizer, which MERU and
open_clip keep (FAMILIES_SPEC 1.1, 3): ftfy's `fix_text`, HTML entities unescaped twice,
whitespace collapsed and stripped (lower-casing is the BPE's own). transformers'
CLIPTokenizer does none of the first three: "a &amp; b" would keep "amp"."""
import functools
import html
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


@functools.lru_cache(maxsize=1)
def bpe_tokenizer():
  """CleanedTokenizer on the OpenAI CLIP vocabulary hierre_jax ships."""
  with tempfile.TemporaryDirectory() as d:
    clip_tokenizer.write_clip_vocab(d)
    return CleanedTokenizer.from_pretrained(d)
