"""ALIGN's own paths beyond the family tests (parity, export, embedding and evaluators run
over the `family` fixture): an even image size, the published parameter count and the real
EfficientNet-B7 shapes, the Embedder's root, training, and bad inputs."""
import os

import jax
import numpy as np
import pytest
import safetensors.numpy

from conftest import write_tiny_model
from family_matrix import ALIGN_TINY_TEXT
from hierre_jax import loading
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax.models import state_dicts
from hierre_jax.models.align import convert
from hierre_jax.models.align import modeling
from hierre_jax.models.align import random_init
from references import assert_parity


@pytest.fixture(scope="module")
def align_dir(tmp_path_factory):
  return write_tiny_model("align", str(tmp_path_factory.mktemp("align")))


@pytest.mark.reordering
def test_align_parity_at_an_even_image_size(align_dir):
  assert_parity(align_dir, image_size=64)  # the family test runs the preprocessing's 45 px


def test_align_base_has_the_published_parameter_count():
  import transformers
  hf = transformers.AlignConfig(text_config={}, vision_config=dict(
      image_size=289, hidden_dim=640, depthwise_padding=[]), projection_dim=640)
  shapes = modeling.variable_shapes(modeling.AlignConfig.from_hf(hf))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  assert count == 172_117_841  # ALIGN_SPEC 1.4, the paper's 172M (109M text)
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      shapes["params"]["text_model"])) == 109_482_240


def test_align_bad_inputs_are_named(align_dir, tmp_path):
  import shutil
  model = models.load(align_dir)
  with pytest.raises(errors.UserError, match=r"leave a \d+x\d+ EfficientNet feature map, larger "
                     r"than the pooling window hidden_dim=64"):
    model.encoders().image(model.params, np.zeros((1, 1100, 1100, 3), np.float32))
  no_tok = str(tmp_path / "no_tok")
  shutil.copytree(align_dir, no_tok)
  os.remove(os.path.join(no_tok, "vocab.txt"))
  with pytest.raises(FileNotFoundError, match="no ALIGN tokenizer files"):
    loading.embedder(no_tok)
  path = os.path.join(no_tok, "model.safetensors")
  tensors = safetensors.numpy.load_file(path)
  del tensors["text_projection.bias"]
  tensors["vision_model.extra.weight"] = np.zeros(2, np.float32)
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(state_dicts.CheckpointFormatError,
                     match=r"missing 1 \['text_projection.bias'\]; "
                           r"unexpected 1 \['vision_model.extra.weight'\]"):
    models.load(no_tok)
  assert convert.hf_key_to_path("vision_model.encoder.blocks.3.projection.project_bn."
                                "running_var", 1) == (
      "batch_stats", "vision_model", "encoder", "blocks_3", "projection", "project_bn", "var")


@pytest.mark.reordering
def test_align_packed_step_equals_padded_step_and_keeps_the_image_tower(align_dir, tmp_path):
  from tiny_training import assert_packed_step_equals, run_steps, tiny_config
  config = tiny_config(tmp_path, "align", lr=1e-4, length_groups=((0, 1, 2, 3),),
                       pack_texts=False)
  padded = run_steps(config, align_dir, jax.devices()[:1], 2)
  config.pack_texts = True
  packed = assert_packed_step_equals(config, align_dir, padded)
  for key in ("vision_model", "batch_stats", "temperature"):
    jax.tree.map(np.testing.assert_array_equal, packed[2][key], packed[1][key])
  assert not np.array_equal(packed[2]["text_projection"]["kernel"],
                            packed[1]["text_projection"]["kernel"])


def test_align_trains_exports_and_evaluates_like_clip(tmp_path):
  import transformers
  from configs import align_demo
  from hierre_jax import train
  config = align_demo.get_config()
  config.update(workdir=str(tmp_path), total_steps=3, log_every=1, checkpoint_every=3,
                train_csv=os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                       "hierarcaps_sample.csv"))
  config.random_init.text.update(hidden_size=32, intermediate_size=64)
  config.eval.test_csv = ""
  state = train.train_and_export(config)
  assert int(state.step) == 3
  exported = models.load(str(tmp_path / "export"))
  assert exported.family.name == "align"
  jax.tree.map(np.testing.assert_array_equal, exported.params, jax.device_get(state.params))
  _, info = transformers.AlignModel.from_pretrained(str(tmp_path / "export"),
                                                    output_loading_info=True)
  assert not any(info.values()), info
  embedder = loading.embedder(str(tmp_path))  # the train workdir
  assert embedder.checkpoint_step == 3 and embedder.texts(["a dog"])[0].shape == (1, 40)


def test_align_base_shapes_parity(tmp_path):
  """The real EfficientNet-B7 image tower (55 blocks, 640 channels out) with a one-layer
  text tower, on 64 x 64 images (the shapes of the weights do not depend on the image)."""
  d = random_init.write_random_align(
      str(tmp_path), dict(ALIGN_TINY_TEXT, num_hidden_layers=1),
      dict(image_size=289, hidden_dim=640, depthwise_padding=[]), 640)
  assert len(models.load(d).config.vision.blocks()) == 55
  assert_parity(d, image_size=64)
