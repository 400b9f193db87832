"""RE fine-tuning of ALIGN (kakaobrain/align-base: EfficientNet-B7 + BERT-base) with the
paper's settings (SPEC section 3, ALIGN_SPEC section 7): the text tower and its projection
train, 1 epoch of HierarCaps, batch 8, AdamW at 1e-7, root = the empty string ([CLS][SEP]).
ALIGN's texts are at most 64 tokens, so packed rows and the static padding are 64 long."""
from configs import clip_b32


def get_config():
  config = clip_b32.get_config()
  config.model = "kakaobrain/align-base"  # hub id or local AlignModel directory
  config.workdir = "workdirs/align_base"
  config.length_multiple = 64  # one static text shape on accelerators
  return config
