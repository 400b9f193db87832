"""The RE fine-tuning config (SPEC sections 3 and 6): its choices, the values that cannot
work (`validate`), and how a stored config of an older run is read (`RESUME_RULES`)."""
from hierre_jax import models
from hierre_jax.common.config_values import ResumeRules, number
from hierre_jax.common.errors import ConfigError

# Keys added after runs were started, with the value such a run had: a stored config.json
# without the key is read with this value (a run of unrolled layers resumes only with
# scan_layers=False: its checkpoints hold that layout).
ADDED_KEYS = {"compute_dtype": "float32", "scan_layers": False, "pullback_cache": False,
              "tiers": [0, 1, 2, 3],
              "negatives": True, "loss": "re", "ec_k": 0.1, "ec_margin": 0.1,
              "root": "empty_string", "trainable": "text_tower", "train_images_dir": "",
              "pack_texts": False, "pack_rows_multiple": 1, "export_hf": False,
              "random_init.family": "clip"}

# Values renamed since runs were started: a stored config.json holding the old value is read
# with the new one (a run of loss="clip" resumes as loss="contrastive").
RENAMED_VALUES = {"loss": {"clip": "contrastive"}}

# config.root: the tower's own empty-string embedding (moves with the weights), or a fixed
# root (SPEC section 6); config.trainable: what the optimizer updates.
ROOT_MODES = ("empty_string", "mean", "origin", "pretrained")
TRAINABLE = ("text_tower", "root")
LOSSES = ("re", "ec", "contrastive")
SCHEDULES = ("constant", "warmup_cosine")
MATMUL_PRECISIONS = ("highest", "high", "default")

# How the work is laid out (the same losses, up to float rounding): may change on resume.
LAYOUT_KEYS = ("pullback_cache", "pack_texts", "pack_rows_multiple")
RESUME_RULES = ResumeRules(ADDED_KEYS, RENAMED_VALUES, LAYOUT_KEYS)


def validate(config):
  """Raises ConfigError naming the first key whose value cannot work: missing, of the wrong
  type, not finite, out of range, or not one of the choices."""
  try:
    check_values(config)
  except (KeyError, AttributeError) as e:
    name = str(e.args[0] if e.args else e).splitlines()[0].strip("'\" ")
    raise ConfigError(f"the config has no key {name!r} (a config file written for another "
                      "version of hierre_jax? compare it with configs/clip_b32.py)") from None


def check_values(config):
  for key in ("batch_size", "log_every", "checkpoint_every", "length_multiple",
              "pack_rows_multiple", "eval.text_batch_size", "eval.image_batch_size"):
    number(config, key, 0, low_open=True, integer=True)
  number(config, "eval.image_workers", 0, integer=True)
  if number(config, "eval.every_steps", integer=True) < 0:
    raise ConfigError(f"config.eval.every_steps={config.eval.every_steps!r}: must be an "
                      "integer >= 0 (0: evaluate only at the start and the end)")
  number(config, "warmup_steps", 0, integer=True)
  number(config, "seed", integer=True)
  total_steps = number(config, "total_steps", integer=True)
  if total_steps <= 0 and number(config, "num_epochs", integer=True) <= 0:
    raise ConfigError(f"config.total_steps={config.total_steps} and config.num_epochs="
                      f"{config.num_epochs}: one of them must be positive")
  for key in ("lr", "weight_decay", "grad_clip_norm", "lambda_p", "lambda_e", "lambda_m"):
    number(config, key, 0)
  number(config, "b1", 0, 1, high_open=True)
  number(config, "b2", 0, 1, high_open=True)
  number(config, "eps", 0, low_open=True)
  tiers = tuple(config.tiers)
  if len(tiers) < 2 or tiers != tuple(sorted(set(tiers))) or not set(tiers) <= {0, 1, 2, 3}:
    raise ConfigError(f"config.tiers={config.tiers!r}: two or more of the tiers 0, 1, 2, 3 "
                      "(0-based), increasing")
  for key, allowed in (("root", ROOT_MODES), ("trainable", TRAINABLE), ("loss", LOSSES),
                       ("schedule", SCHEDULES), ("matmul_precision", MATMUL_PRECISIONS),
                       ("compute_dtype", models.COMPUTE_DTYPES)):
    if config[key] not in allowed:
      renamed = RENAMED_VALUES.get(key, {}).get(config[key])
      raise ConfigError(f"config.{key}={config[key]!r}: use one of {allowed}"
                        + (f" (renamed {renamed!r})" if renamed else ""))
  if config.trainable == "root" and (config.root == "empty_string"
                                     or config.loss == "contrastive"):
    raise ConfigError(
        f"config.trainable='root' with config.root={config.root!r}, config.loss="
        f"{config.loss!r}: a trained root starts from a fixed one (root='pretrained' for the "
        "paper's row) and only the RE or EC loss depends on it")
  if config.loss == "contrastive" and not config.train_images_dir:
    raise ConfigError("config.loss='contrastive' needs config.train_images_dir: the folder of "
                      "the training rows' images (image_url file names)")
  if config.loss == "ec":
    number(config, "ec_k", 0, low_open=True)
    number(config, "ec_margin", 0)
  if config.keep_checkpoints is not None and config.keep_checkpoints < 1:
    raise ConfigError(f"config.keep_checkpoints={config.keep_checkpoints}: keep at least 1 "
                      "(a resumed run needs one)")
  if not config.workdir:
    raise ConfigError("config.workdir is empty")
