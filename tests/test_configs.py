"""Every shipped config loads and names what the train loop reads."""
import importlib

import pytest

from hierre_jax.radial import train_batches

REQUIRED = ("model", "train_csv", "workdir", "batch_size", "lr", "schedule", "lambda_p",
            "lambda_e", "lambda_m", "length_multiple", "length_groups", "matmul_precision",
            "checkpoint_every", "log_every", "eval")


@pytest.mark.parametrize("name", ["clip_b32", "clip_l14", "align_base", "siglip_b16", "demo",
                                  "scratch"])
def test_config_loads(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  for key in REQUIRED:
    assert key in config, (name, key)
  train_batches.group_columns(config.length_groups)
  assert bool(config.model) != bool(config.random_init), name  # exactly one source of weights


def test_paper_settings():
  from configs import clip_b32, scratch
  c = clip_b32.get_config()
  assert (c.lr, c.weight_decay, c.b1, c.b2, c.eps, c.batch_size, c.num_epochs) == (
      1e-7, 0.01, 0.9, 0.999, 1e-8, 8, 1)
  assert (c.lambda_p, c.lambda_e, c.lambda_m, c.schedule, c.grad_clip_norm) == (
      10.0, 1.0, 1.0, "constant", 0.0)
  assert scratch.get_config().lambda_p == 0.0


def shipped_configs():
  """Every configs/**/*.py with a get_config(), by module name."""
  import pathlib
  root = pathlib.Path(__file__).resolve().parent.parent / "configs"
  names = [".".join(p.relative_to(root.parent).with_suffix("").parts)
           for p in sorted(root.rglob("*.py")) if p.name != "__init__.py"]
  return [n for n in names if hasattr(importlib.import_module(n), "get_config")]


@pytest.mark.parametrize("name", shipped_configs())
def test_config_seed_draws_the_random_weights_too(name):
  """One seed per run (issue 41): config.seed also draws a random_init's weights."""
  config = importlib.import_module(name).get_config()
  if not config.get("random_init"):
    pytest.skip("loads pretrained weights")
  config.seed = 12345
  assert config.random_init.seed == 12345
