"""The release's training-image augmentation (DCSM_SPEC section 6): a small random perspective
(distortion 0.05, with probability 0.2), a rotation of up to +-4 degrees, then 2% salt and
2% pepper, per channel. Deterministic given the numpy generator."""
import numpy as np
from PIL import Image

PERSPECTIVE = 0.05
PERSPECTIVE_P = 0.2
DEGREES = 4.0
SALT = PEPPER = 0.02


def perspective_coefficients(start, end):
  """The 8 coefficients of PIL's PERSPECTIVE transform mapping output corners `end` back to
  input corners `start` (each 4 x (x, y))."""
  a = []
  for (x, y), (u, v) in zip(end, start):
    a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
  return np.linalg.solve(np.asarray(a, np.float64), np.asarray(start, np.float64).reshape(8))


def random_perspective(image, rng, distortion=PERSPECTIVE):
  """Each corner moved inwards by up to `distortion` of half the side."""
  w, h = image.size
  dx, dy = int(distortion * w / 2), int(distortion * h / 2)
  jitter = lambda d: int(rng.integers(0, d + 1))
  start = [(0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1)]
  end = [(jitter(dx), jitter(dy)), (w - 1 - jitter(dx), jitter(dy)),
         (w - 1 - jitter(dx), h - 1 - jitter(dy)), (jitter(dx), h - 1 - jitter(dy))]
  return image.transform(image.size, Image.Transform.PERSPECTIVE,
                         perspective_coefficients(start, end), Image.Resampling.BILINEAR)


def salt_and_pepper(image, rng, salt=SALT, pepper=PEPPER):
  """Each channel of each pixel drawn apart, as the release: `salt` of them set to 255,
  `pepper` to 0."""
  pixels = np.array(image)
  draw = rng.random(pixels.shape)
  pixels[draw < salt] = 255
  pixels[(draw >= salt) & (draw < salt + pepper)] = 0
  return Image.fromarray(pixels)


def augment(image, rng):
  """An RGB PIL image -> its augmented copy (perspective, rotation, salt and pepper)."""
  if rng.random() < PERSPECTIVE_P:
    image = random_perspective(image, rng)
  image = image.rotate(float(rng.uniform(-DEGREES, DEGREES)), Image.Resampling.NEAREST)
  return salt_and_pepper(image, rng)
