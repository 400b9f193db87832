"""The method itself (RE loss, learned empty-string root, pull-back), the reference row of
Tables 3 and 5; at "cpu" scale the from-scratch model of configs/scratch.py.

  python -m hierre_jax.train --config configs/ablations/method.py[:cpu]
"""
from configs.ablations import common


def apply(config):
  del config  # the base unchanged


def get_config(scale="full"):
  return common.variant("method", apply, scale)
