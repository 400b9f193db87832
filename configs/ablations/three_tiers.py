"""Table 3 "3 tiers": tier 2 (the second most general) dropped from the training rows;
tiers 1, 3, 4 form the chain."""
from configs.ablations import common


def apply(config):
  config.tiers = (0, 2, 3)


def get_config(scale="full"):
  return common.variant("three_tiers", apply, scale)
