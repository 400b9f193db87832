"""Table 5, the fourth (largest, every hinge active) of the four entailment-cone margins (ec_margins.py)."""
from configs.ablations import common
from configs.ablations import ec_margins

apply = ec_margins.apply_margin(4)


def get_config(scale="full"):
  return common.variant("ec_margin_4", apply, scale)
