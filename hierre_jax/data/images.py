"""Images as every family reads them: RGB as transformers converts them, and batches of a
family's preprocessing over paths or PIL images."""
import collections
import concurrent.futures
import os

import numpy as np
from PIL import Image

from hierre_jax.common import errors


class ImageError(errors.UserError):
  """An image file that cannot be read; the message names it."""


def has_transparency(path):
  """Whether the image file at `path` has an alpha band or a transparent palette colour
  (False for a file that cannot be read: its reader names it)."""
  try:
    with Image.open(path) as f:
      return "A" in f.getbands() or f.info.get("transparency") is not None
  except (OSError, SyntaxError, ValueError):
    return False


def to_rgb(image):
  """PIL image -> RGB as transformers' `convert_to_rgb`: transparency (an alpha band or a
  palette's transparent colour) composited onto white, not dropped."""
  if "A" in image.getbands() or image.info.get("transparency") is not None:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
  return image.convert("RGB")


def open_rgb(image):
  """A path or PIL image -> RGB PIL image; ImageError naming a file that cannot be read."""
  if isinstance(image, Image.Image):
    return to_rgb(image)
  try:
    with Image.open(image) as f:
      return to_rgb(f)
  except (OSError, SyntaxError, ValueError) as e:  # truncated, corrupt or not an image
    raise ImageError(f"{image}: cannot read this image ({e})") from e


def load_batches(images, preprocessing, batch_size, workers=None, prefetch=2):
  """Yields [n <= batch_size, H, W, 3] float32 batches of paths or PIL images, in order,
  each image through `preprocessing.preprocess` (a family's image preprocessing).

  Images are decoded and preprocessed by `workers` threads (default: one per CPU; PIL
  releases the GIL while it decodes and resizes), up to `prefetch` batches ahead of the
  consumer, so that the device embeds one batch while the next ones are read. A file that
  cannot be read raises its ImageError when its batch is reached.
  """
  starts = iter(range(0, len(images), batch_size))
  pool = concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count())
  pending = collections.deque()
  def submit():
    start = next(starts, None)
    if start is not None:
      pending.append([pool.submit(preprocessing.preprocess, image)
                      for image in images[start:start + batch_size]])
  try:
    for _ in range(prefetch + 1):
      submit()
    while pending:
      batch = pending.popleft()
      submit()
      yield np.stack([future.result() for future in batch])
  finally:  # an error or an early stop leaves no work queued
    pool.shutdown(wait=True, cancel_futures=True)
