"""A small CLIP trained from scratch with CLIP's contrastive objective (both towers) on the
procedural shapes data of `python -m hierre_jax.dcsm make-data` (docs/dcsm.md): the frozen
backbone of the offline DCSM study, sized for a 2-core CPU.

  python -m hierre_jax.dcsm make-data --out workdirs/shapes_data --seed 0
  python -m hierre_jax.contrastive --config configs/contrastive/shapes.py
"""
import ml_collections

DATA = "workdirs/shapes_data"


def get_config():
  config = ml_collections.ConfigDict(dict(
      model="",
      random_init=dict(
          family="clip",
          text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=77, eos_token_id=2),
          vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                      num_attention_heads=4, image_size=64, patch_size=8),
          projection_dim=64),
      # or "sigmoid" (SigLIP's: random_init.family="siglip") or "meru" (a hyperbolic MERU:
      # random_init.family="meru")
      loss="contrastive",
      # > 0: plus this times FILIP's token-wise loss (word tokens against patches; the DCSM
      # study's positive control, configs/contrastive/shapes_tokens.py).
      token_loss_weight=0.0,
      # > 0: plus this times the grounding loss (each word of a row's regions column on the
      # patches of its box; configs/contrastive/shapes_grounded.py).
      grounding_loss_weight=0.0,
      train_csv=f"{DATA}/train/captions.csv",
      workdir="workdirs/shapes_clip", export_dir="",
      batch_size=64, num_epochs=6, total_steps=0,
      lr=1e-3, schedule="warmup_cosine", warmup_steps=100,
      b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.1, grad_clip_norm=1.0,
      seed=0, scan_layers=True,
      log_every=25, checkpoint_every=250, keep_checkpoints=2,
      matmul_precision="highest", compilation_cache_dir="",
      eval=dict(csv=f"{DATA}/val/captions.csv", every_steps=500, at_start=False, at_end=True,
                image_batch_size=64),
  ))
  config.random_init.seed = config.get_ref("seed")  # one seed: weights, batches
  return config
