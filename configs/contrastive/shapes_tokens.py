"""The DCSM study's positive control (docs/dcsm.md): configs/contrastive/shapes.py plus FILIP's
token-wise contrastive term with weight 1, so that the backbone's word tokens and patches
align, which DCSM reads.

  bash launch/dcsm_shapes.sh SEED tokens
"""
from configs.contrastive import shapes


def get_config():
  config = shapes.get_config()
  config.token_loss_weight = 1.0
  config.workdir = "workdirs/shapes_clip_tokens"
  return config
