"""Table 3 "only learning root": both towers frozen; the root is a free vector initialised at
the pretrained embedding of the empty string, and the only trained parameter (saved with
the model as re_root.json; evaluations use it). At "cpu" scale the frozen tower is the
random one: the row asks how much a root alone can order a random tower's texts."""
from configs.ablations import common


def apply(config):
  config.root = "pretrained"
  config.trainable = "root"


def get_config(scale="full"):
  return common.variant("root_only", apply, scale)
