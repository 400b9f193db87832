"""Table 3 "fixed root = mean": the root fixed at the normalised mean of the pretrained
features of every training text (positives and negatives, all tiers), as Desai et al."""
from configs.ablations import common


def apply(config):
  config.root = "mean"


def get_config(scale="full"):
  return common.variant("root_mean", apply, scale)
