"""RE fine-tuning of SigLIP (google/siglip-base-patch16-224) with the paper's settings
(SPEC section 3): the text encoder and its head train, the image tower is frozen, root = the
empty string padded to 64 (64 x eos; FAMILIES_SPEC section 2). Every SigLIP text is padded to
64 tokens (its tower attends to the pads), so a packed row holds one text. SigLIP 2's
fixed-resolution checkpoints (e.g. google/siglip2-base-patch16-224) work the same way."""
from configs import clip_b32


def get_config():
  config = clip_b32.get_config()
  config.model = "google/siglip-base-patch16-224"  # hub id or local SiglipModel directory
  config.workdir = "workdirs/siglip_b16"
  config.length_multiple = 64
  return config
