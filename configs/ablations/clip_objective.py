"""Table 3 "FT with CLIP objective": the text tower trained with CLIP's symmetric
contrastive loss (frozen image tower, the checkpoint's logit scale) between each row's
image and one positive text drawn at random per row and step; the pull-back term stays.

Needs the training images: set config.train_images_dir (the grid runner:
--override=train_images_dir=DIR), the folder of the train CSV's image_url file names.
"""
from configs.ablations import common


def apply(config):
  config.loss = "contrastive"


def get_config(scale="full"):
  return common.variant("clip_objective", apply, scale, not_from_scratch=(
      "the frozen image tower is random there (nothing to align texts to), and the "
      "HierarCaps training images are not available offline"))
