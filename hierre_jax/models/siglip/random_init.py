"""Random-weight SigLIP checkpoints in Hugging Face format (`SiglipModel`), built without torch
or a download, with a small SentencePiece vocabulary trained on the English words of the
OpenAI CLIP BPE that hierre_jax ships (the real vocabulary is not distributed here)."""
import gzip

import jax
import transformers

from hierre_jax.models import hf_io
from hierre_jax.models.clip import convert as clip_convert
from hierre_jax.models.clip import tokenizer as clip_tokenizer
from hierre_jax.models.siglip import modeling
from hierre_jax.models.siglip import tokenizer

# A random checkpoint's SentencePiece vocabulary size at most (ids above stay unused).
MAX_SPIECE_VOCAB = 2000


def english_words():
  """The whole-word tokens of the OpenAI CLIP BPE merges (alphabetic, in merge order)."""
  with gzip.open(clip_tokenizer.BPE_MERGES, "rt", encoding="utf-8") as f:
    merges = f.read().split("\n")[1:clip_tokenizer.NUM_MERGES + 1]
  words = ("".join(m.split()) for m in merges)
  return [w[:-4] for w in words if w.endswith("</w>") and w[:-4].isalpha()]


# SigLIP's special ids (pad = eos = "</s>", no bos); transformers' defaults are CLIP's.
SPECIAL_IDS = dict(pad_token_id=1, eos_token_id=1, bos_token_id=None)


def hf_config(text, vision):
  """transformers.SiglipConfig from plain dicts of HF config keys."""
  return transformers.SiglipConfig(text_config={**SPECIAL_IDS, **text},
                                   vision_config=dict(vision))


def write_random_siglip(out_dir, text, vision, projection_dim, seed=0):
  """Writes a random SiglipModel (config, safetensors, spiece.model) to `out_dir`;
  `projection_dim` must be the vision width (SigLIP has no image projection)."""
  config = hf_config(dict(text, projection_size=projection_dim), vision)
  params = modeling.init_params(modeling.SiglipConfig.from_hf(config), jax.random.key(seed))
  hf_io.write_model_dir(clip_convert.params_to_state_dict(params), None, config,
                        ["SiglipModel"], out_dir, None, ())
  tokenizer.train_spiece(english_words(), out_dir,
                         min(MAX_SPIECE_VOCAB, config.text_config.vocab_size))
  return out_dir
