"""The DCSM study's supervised positive control (docs/dcsm.md): configs/contrastive/shapes.py
plus the grounding loss with weight 1: each shape, colour and size word of a caption puts its
similarity on the patches where the generator drew that object (the captions.csv regions
column), so that the backbone's word tokens and patches align, which DCSM reads.

  bash launch/dcsm_shapes.sh SEED grounded
"""
from configs.contrastive import shapes


def get_config():
  config = shapes.get_config()
  config.grounding_loss_weight = 1.0
  config.workdir = "workdirs/shapes_clip_grounded"
  return config
