"""What every ablation config shares: the base each row is derived from, by scale.

"full": configs/clip_b32.py, the paper's CLIP-B settings (SPEC section 6).
"cpu": configs/scratch.py (a small random text tower trained from scratch on a 2-core
CPU), shortened to CPU_STEPS, its padded texts (evaluations, the contrastive row) to
multiples of 16 (half the compilations of scratch.py's 8, each about 10 s there) so that
the 11 variants of both CPU grids run in about an hour. Rows whose change makes no sense from a random initialisation refuse the
"cpu" scale, saying why.
"""
from configs import clip_b32
from configs import scratch

CPU_STEPS = 400  # scratch.py's 2000 steps / 5


def cpu_base():
  config = scratch.get_config()
  config.total_steps = CPU_STEPS
  config.warmup_steps = CPU_STEPS // 10
  config.length_multiple = 16
  return config


BASES = {"full": clip_b32.get_config, "cpu": cpu_base}


def variant(name, apply, scale="full", not_from_scratch=""):
  """The config of ablation row `name`: the base of `scale` changed by `apply(config)`."""
  if scale not in BASES:
    raise ValueError(f"ablation {name}: scale {scale!r}; use one of {', '.join(BASES)}")
  if scale == "cpu" and not_from_scratch:
    raise ValueError(f"ablation {name} has no CPU-scale twin: {not_from_scratch}")
  config = BASES[scale]()
  apply(config)
  config.workdir = f"workdirs/ablations/{scale}/{name}"
  return config
