"""DCSM scorer training as released (DCSM_SPEC section 6): frozen CLIP ViT-B/16, batch 8 per
block, dropout 0.1, Adam at 1e-3 (CHOICE: the checkpoint's name says 1e-3, the README 1e-5,
a function default 1e-4), 26 epochs, the release's column rule.

  python -m hierre_jax.dcsm train --config configs/dcsm/base.py --config.data_dir=DATA
"""
import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      model="openai/clip-vit-base-patch16",  # the frozen backbone (directory, hub id, workdir)
      data_dir="",                 # training sets in the procedural layout (make-data)
      workdir="workdirs/dcsm",
      batch_size=8,                # pairs per block: each block is 2B x 2B
      num_epochs=26, total_steps=0,  # total_steps > 0 overrides the epochs
      lr=1e-3, schedule="constant", warmup_steps=0,
      b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip_norm=0.0,  # Adam
      dropout=0.1,
      init="flax",                 # CHOICE: the CNN's initial draws, "flax" (Flax's defaults)
                                   # or "pytorch" (the release's PyTorch layers' defaults)
      column_rule="release", functional_rows=True, per_map=False,
      table_seed=15,               # the functional rows' draws: the seed, and whose
      table_generator="",          # generator ("torch", the release's; "numpy"; "": torch's
                                   # where PyTorch is installed, else numpy's; recorded)
      augment=False,               # CHOICE: the release augments (perspective, rotation, salt
                                   # and pepper); off, every image is embedded once
      seed=0,
      feature_batch_size=32,       # images / captions per call of the frozen towers
      log_every=10, checkpoint_every=100, keep_checkpoints=3,
      matmul_precision="highest", compilation_cache_dir="",
      eval=dict(benchmarks=(), data_dir="", every_steps=0, at_start=False, at_end=True,
                # pairs per set of data_dir's val / train split scored in the training
                # format at each evaluation (`dcsm.validation`): the learning curves
                validation_pairs=0, train_pairs=0,
                # the scorer exported: "last" (the last step's) or "validation" (the
                # evaluated step with the best mean validation pair accuracy)
                select="last"),
  ))
