"""Table 5, the third of the four entailment-cone margins (ec_margins.py)."""
from configs.ablations import common
from configs.ablations import ec_margins

apply = ec_margins.apply_margin(3)


def get_config(scale="full"):
  return common.variant("ec_margin_3", apply, scale)
