"""Pixel parity with transformers' CLIP image processor (PIL backend)."""
import numpy as np
import pytest
from PIL import Image

from conftest import shared_file
from hierre_jax.data import images
from hierre_jax.models.clip import preprocessing as ip


def reference(image, size, crop):
  import transformers
  proc = transformers.models.clip.image_processing_pil_clip.CLIPImageProcessorPil(
      size={"shortest_edge": size}, crop_size={"height": crop, "width": crop})
  return proc(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)


@pytest.mark.parametrize("shape", [(256, 256), (300, 451), (451, 300), (225, 224), (233, 997)])
@pytest.mark.parametrize("size", [224, 64])
def test_matches_clip_image_processor(rng, shape, size):
  image = Image.fromarray((rng.random(shape + (3,)) * 255).astype(np.uint8))
  got = ip.preprocess(image, ip.Preprocessing(size, size))
  np.testing.assert_allclose(got, reference(image, size, size), atol=1e-5, rtol=0)


@pytest.mark.parametrize("width, height", [(640, 427), (427, 640), (500, 375), (640, 480)])
def test_open_clip_and_meru_crop_where_torchvision_does(rng, width, height):
  """torchvision's CenterCrop (open_clip's and MERU's transforms) offsets the crop by
  int(round((h - crop) / 2.0)) where HF floors: one pixel apart for 640x427 (55.5 -> 56).
  Written from torchvision's documented formula: Resize(224) on PIL (bicubic, the long side
  truncated), then that crop."""
  image = Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))
  short, long_ = (width, height) if width <= height else (height, width)
  resized_long = int(224 * long_ / short)
  size = (224, resized_long) if width <= height else (resized_long, 224)
  x = np.asarray(image.resize(size, Image.Resampling.BICUBIC), np.float32) / 255.0
  top = int(round((x.shape[0] - 224) / 2.0))
  left = int(round((x.shape[1] - 224) / 2.0))
  want = x[top:top + 224, left:left + 224]
  p = ip.Preprocessing(224, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), round_crop=True)
  np.testing.assert_allclose(ip.preprocess(image, p), want, atol=1e-6)
  hf = ip.preprocess(image, ip.Preprocessing(224, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
  if (resized_long - 224) % 2 and round((resized_long - 224) / 2.0) != (resized_long - 224) // 2:
    assert np.abs(hf - want).max() > 0.01  # HF's floor is a pixel off


def test_real_test_image_and_grayscale(rng):
  path = shared_file("test_images/COCO_val2014_000000000139.jpg")
  got = ip.preprocess(path, ip.Preprocessing())
  with Image.open(path) as im:
    np.testing.assert_allclose(got, reference(im, 224, 224), atol=1e-5, rtol=0)
  gray = Image.fromarray((rng.random((240, 320)) * 255).astype(np.uint8), mode="L")
  np.testing.assert_allclose(ip.preprocess(gray, ip.Preprocessing()),
                             reference(gray.convert("RGB"), 224, 224), atol=1e-5, rtol=0)


def test_truncated_image_names_the_file(tmp_path):
  path = tmp_path / "cut.jpg"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
  raw = path.read_bytes()
  path.write_bytes(raw[:len(raw) // 2])
  with pytest.raises(images.ImageError, match=r"cut.jpg: cannot read this image "
                     r"\(image file is truncated"):
    ip.preprocess(str(path), ip.Preprocessing(32, 32))


def test_transparency_is_composited_onto_white_like_transformers(rng, tmp_path):
  pixels = (rng.random((40, 60, 4)) * 255).astype(np.uint8)
  rgba = Image.fromarray(pixels, mode="RGBA")
  rgba.save(tmp_path / "a.png")
  want = reference(rgba, 32, 32)
  np.testing.assert_allclose(ip.preprocess(rgba, ip.Preprocessing(32, 32)), want, atol=1e-5)
  np.testing.assert_allclose(ip.preprocess(str(tmp_path / "a.png"), ip.Preprocessing(32, 32)),
                             want, atol=1e-5)
  # Dropping alpha instead would be far off (the check can fail).
  assert np.abs(reference(rgba.convert("RGB"), 32, 32) - want).max() > 0.5
  palette = rgba.convert("RGB").convert("P")
  palette.info["transparency"] = 0
  np.testing.assert_allclose(ip.preprocess(palette, ip.Preprocessing(32, 32)),
                             reference(palette, 32, 32), atol=1e-5)


def test_threaded_batches_keep_order_and_name_a_bad_file(tmp_path):
  rng = np.random.default_rng(1)
  paths = []
  for i in range(23):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), np.uint8)).save(paths[-1])
  pre = ip.Preprocessing(16, 16)
  want = np.stack([ip.preprocess(p, pre) for p in paths])
  for workers, prefetch in ((1, 0), (4, 2), (8, 5)):
    batches = list(images.load_batches(paths, pre, 5, workers, prefetch))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches), want)
  (tmp_path / "13.png").write_bytes(b"not an image")
  batches = images.load_batches(paths, pre, 5, 4, 2)
  assert len(next(batches)) == 5 and len(next(batches)) == 5  # images 0-9 still read
  with pytest.raises(images.ImageError, match=r"13.png: cannot read this image"):
    next(batches)
