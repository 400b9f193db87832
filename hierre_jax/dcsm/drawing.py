"""Drawing the procedural DCSM scenes: filled 2-D shapes in the cells of a 3 x 3 grid on a
light random background (`procedural` writes the data sets with it)."""
import numpy as np
from PIL import Image
from PIL import ImageDraw

COLOURS = {"red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
           "yellow": (255, 238, 51), "purple": (129, 38, 192), "cyan": (41, 208, 208),
           "brown": (129, 74, 25), "gray": (87, 87, 87)}  # the CLEVR palette
STEP = {"above": (0, -1), "below": (0, 1), "right": (1, 0), "left": (-1, 0)}


def draw_shape(draw, shape, centre, radius, fill):
  """Draws a filled `shape` of `radius` pixels at `centre` on a PIL ImageDraw."""
  x, y = centre
  r = radius
  box = (x - r, y - r, x + r, y + r)
  polygon = lambda angles, radii: [(x + rr * np.sin(a), y - rr * np.cos(a))
                                   for a, rr in zip(angles, radii)]
  if shape == "circle":
    draw.ellipse(box, fill=fill)
  elif shape == "ring":
    draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
  elif shape == "square":
    draw.rectangle((x - 0.8 * r, y - 0.8 * r, x + 0.8 * r, y + 0.8 * r), fill=fill)
  elif shape == "triangle":
    draw.polygon(polygon(np.arange(3) * 2 * np.pi / 3, [r] * 3), fill=fill)
  elif shape == "diamond":
    draw.polygon(polygon(np.arange(4) * np.pi / 2, [r, 0.6 * r] * 2), fill=fill)
  elif shape == "star":
    draw.polygon(polygon(np.arange(10) * np.pi / 5, [r, 0.4 * r] * 5), fill=fill)
  elif shape == "cross":
    w = 0.3 * r
    draw.rectangle((x - w, y - r, x + w, y + r), fill=fill)
    draw.rectangle((x - r, y - w, x + r, y + w), fill=fill)
  elif shape == "heart":
    h = r / 2
    draw.ellipse((x - r, y - r, x, y), fill=fill)
    draw.ellipse((x, y - r, x + r, y), fill=fill)
    draw.polygon([(x - r + 1, y - h + 2), (x + r - 1, y - h + 2), (x, y + r)], fill=fill)
  else:
    raise ValueError(f"unknown shape {shape!r}")


class Canvas:
  """Scenes on a size x size canvas with a light random background and a 3 x 3 grid."""

  def __init__(self, size, rng):
    self.size, self.rng = size, rng

  def background(self):
    return tuple(int(v) for v in self.rng.integers(205, 256, 3))

  def placement(self, cell, scale, jitter):
    """-> (centre (x, y), radius) in pixels of a shape in `cell` (col, row)."""
    side = self.size / 3
    return ((cell[0] + 0.5) * side + jitter[0], (cell[1] + 0.5) * side + jitter[1]), \
        scale * side * 0.42

  def box(self, cell, scale, jitter):
    """-> (x0, y0, x1, y1): the square a shape is drawn in, as fractions of the canvas."""
    (x, y), r = self.placement(cell, scale, jitter)
    return tuple(float(np.clip(v / self.size, 0, 1)) for v in (x - r, y - r, x + r, y + r))

  def render(self, objects, background):
    """objects: [(shape, colour name, cell (col, row), scale, jitter)] -> RGB PIL image,
    with the objects in `image.info["objects"]`."""
    image = Image.new("RGB", (self.size, self.size), background)
    draw = ImageDraw.Draw(image)
    for shape, colour, cell, scale, jitter in objects:
      draw_shape(draw, shape, *self.placement(cell, scale, jitter), COLOURS[colour])
    image.info["objects"] = list(objects)
    return image

  def jitter(self):
    return tuple(self.rng.uniform(-0.08, 0.08, 2) * self.size / 3)

  def pair_cells(self, rel):
    """Grid cells (of A, of B) with A `rel` B."""
    dx, dy = STEP[rel]
    while True:
      a = tuple(int(v) for v in self.rng.integers(0, 3, 2))
      b = (a[0] - dx, a[1] - dy)
      if 0 <= b[0] < 3 and 0 <= b[1] < 3:
        return a, b
