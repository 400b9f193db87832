"""Table 3 "fixed root = origin": the root fixed at the zero vector."""
from configs.ablations import common


def apply(config):
  config.root = "origin"


def get_config(scale="full"):
  return common.variant("root_origin", apply, scale)
