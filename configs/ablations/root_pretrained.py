"""Table 3 "fixed root = empty string": the root fixed at the pretrained (at "cpu" scale:
the initial) embedding of the empty string, instead of moving with the text tower."""
from configs.ablations import common


def apply(config):
  config.root = "pretrained"


def get_config(scale="full"):
  return common.variant("root_pretrained", apply, scale)
