"""Table 3 "no negatives": the Q terms removed from L_e and L_m (L_m = max P)."""
from configs.ablations import common


def apply(config):
  config.negatives = False


def get_config(scale="full"):
  return common.variant("no_negatives", apply, scale)
