"""The model a run starts from, and what a workdir keeps of it to read its checkpoints."""
import os

from hierre_jax import models
from hierre_jax import sharding
from hierre_jax.models import hf_io


def prepare_model_dir(config, is_main):
  """The checkpoint to start from: config.model, or a random CLIP written to the workdir
  (by process 0; the others wait for it)."""
  if not config.get("random_init"):
    return config.model
  r = config.random_init
  out = os.path.join(config.workdir, "random_init")
  if is_main and not os.path.exists(os.path.join(out, "model.safetensors")):
    models.FAMILIES[r.get("family", "clip")].write_random(
        out, r.text.to_dict(), r.vision.to_dict(), r.projection_dim, seed=r.seed)
  sharding.barrier("random_init written")
  return out


def save_model_info(family, hf_config, model_dir, workdir):
  """config.json + tokenizer files in workdir/model_info: enough to read our checkpoints."""
  info = os.path.join(workdir, "model_info")
  os.makedirs(info, exist_ok=True)
  hf_config.save_pretrained(info)
  hf_io.copy_files(model_dir, info, family.model_files)
