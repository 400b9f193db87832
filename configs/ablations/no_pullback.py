"""Table 3 "lambda_p = 0": no pull-back term towards the pretrained text tower."""
from configs.ablations import common


def apply(config):
  config.lambda_p = 0.0


def get_config(scale="full"):
  return common.variant("no_pullback", apply, scale, not_from_scratch=(
      "the from-scratch method already has lambda_p = 0 (pulling back towards a random "
      "tower has no meaning), so this row is the cpu 'method' row"))
