"""RE fine-tuning of OpenAI CLIP ViT-L/14 with the paper's settings."""
from configs import clip_b32


def get_config():
  config = clip_b32.get_config()
  config.model = "openai/clip-vit-large-patch14"
  config.workdir = "workdirs/clip_l14"
  config.remat = True  # 12-layer 768-wide text tower; saves activation memory on accelerators
  return config
