"""The Lorentz hyperboloid of curvature -c (MERU's space; ../shared/FAMILIES_SPEC.md 1.2).

Points are stored by their space part x (the time part x_t = sqrt(1/c + |x|^2) follows);
the origin O is x = 0. Features are lifted from the tangent space at O by `exp_map0`.
Clamps as the spec gives them (EPS), except where float32 cannot hold them (1 +- 1e-8):
the arccos arguments are kept ACOS_MARGIN inside [-1, 1] (an angle moves by at most 5e-4
rad there), and the distance's arccosh takes its derivative no closer to 1 than
1 + ACOSH_MARGIN (its value is exact), so that gradients stay finite where two points meet.
Functions broadcast over leading axes.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors

EPS = 1e-8
ACOS_MARGIN = 1e-7
ACOSH_MARGIN = 1e-6
MAX_SINH_INPUT = float(np.arcsinh(2.0 ** 15))
MIN_RADIUS = 0.1  # MERU's entailment-cone constant K


def space_norm(x):
  """|x| of the space parts [..., D] -> [...], at least EPS."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1), EPS ** 2))


def time_part(x, c):
  """[..., D] -> [...] x_t = sqrt(1/c + |x|^2)."""
  return jnp.sqrt(1.0 / c + jnp.sum(x * x, axis=-1))


def exp_map0(v, c):
  """Tangent vectors at O [..., D] -> points (space parts) [..., D]: MERU's
  sinh(min(s, asinh(2^15))) v / s, s = max(sqrt(c)|v|, EPS): only the sinh argument is
  capped, so |exp_map0(v)| saturates at 2^15 / sqrt(c) (FAMILIES_SPEC 1.2); finite
  gradients at v = 0."""
  s = jnp.maximum(jnp.sqrt(c) * space_norm(v), EPS)
  return (jnp.sinh(jnp.minimum(s, MAX_SINH_INPUT)) / s)[..., None] * v


def log_map0(x, c):
  """Points [..., D] -> tangent vectors at O [..., D]; |log_map0(x)| = d(O, x); finite
  gradients at x = 0."""
  d0 = _arccosh(jnp.sqrt(1.0 + c * jnp.sum(x * x, axis=-1)))
  return (d0 / jnp.maximum(jnp.sqrt(c) * space_norm(x), EPS))[..., None] * x


@jax.custom_jvp
def _arccosh(z):
  """arccosh(max(z, 1)), its derivative capped at that of 1 + ACOSH_MARGIN."""
  return jnp.arccosh(jnp.maximum(z, 1.0))


@_arccosh.defjvp
def _arccosh_jvp(primals, tangents):
  (z,), (dz,) = primals, tangents
  safe = jnp.maximum(z, 1.0 + ACOSH_MARGIN)
  return _arccosh(z), jnp.where(z > 1.0, dz / jnp.sqrt(safe * safe - 1.0), 0.0)


def inner(x, y, c):
  """Lorentzian inner product <x, y> - x_t y_t: [..., D] x2 -> [...]."""
  return jnp.sum(x * y, axis=-1) - time_part(x, c) * time_part(y, c)


def distance(x, y, c):
  """Geodesic distance acosh(-c <x, y>_L) / sqrt(c) (argument >= 1)."""
  return _arccosh(-c * inner(x, y, c)) / jnp.sqrt(c)


def distance0(x, c):
  """d(O, x) = acosh(sqrt(1 + c|x|^2)) / sqrt(c), monotone in |x|."""
  return _arccosh(jnp.sqrt(1.0 + c * jnp.sum(x * x, axis=-1))) / jnp.sqrt(c)


def _acos(cosine):
  return jnp.arccos(jnp.clip(cosine, -1.0 + ACOS_MARGIN, 1.0 - ACOS_MARGIN))


def geodesic(x, y, t, c):
  """The point a fraction t of the way along the geodesic from x to y: [..., D] x and y,
  [...] t -> [..., D], (sinh((1 - t) a) x + sinh(t a) y) / sinh(a) with a = sqrt(c) d(x, y)
  (the hyperboloid's slerp; a linear combination, so the space parts combine as the points
  do); where x and y (nearly) meet, (1 - t) x + t y. With y = O it is MERU's
  exp_map0((1 - t) log_map0(x))."""
  a = jnp.sqrt(c) * distance(x, y, c)
  near = a < 1e-4
  safe = jnp.where(near, 1.0, a)
  wx = jnp.where(near, 1.0 - t, jnp.sinh((1.0 - t) * safe) / jnp.sinh(safe))
  wy = jnp.where(near, t, jnp.sinh(t * safe) / jnp.sinh(safe))
  return wx[..., None] * x + wy[..., None] * y


def half_aperture(x, c, k=MIN_RADIUS):
  """Half-aperture of the entailment cone at x: asin(2K / (sqrt(c)|x|)), clamped."""
  ratio = 2.0 * k / (jnp.sqrt(c) * space_norm(x) + EPS)
  return jnp.arcsin(jnp.clip(ratio, -1.0 + ACOS_MARGIN, 1.0 - ACOS_MARGIN))


def oxy_angle(x, y, c):
  """Exterior angle at x of the triangle (O, x, y): MERU's entailment angle, in [0, pi]."""
  x_t, y_t = time_part(x, c), time_part(y, c)
  return oxy_angle_of(jnp.sum(x * y, axis=-1) - x_t * y_t, x_t, y_t, space_norm(x), c)


def oxy_angle_of(xy, x_t, y_t, x_norm, c):
  """`oxy_angle` from the Lorentzian inner product <x, y>_L, both time parts and |x|, all
  broadcast together (an [..., N] matrix of inner products from one matmul, for one)."""
  c_xy = c * xy
  denominator = x_norm * jnp.sqrt(jnp.maximum(c_xy ** 2 - 1.0, EPS)) + EPS
  return _acos((y_t + c_xy * x_t) / denominator)


def law_of_cosines_angle(x, y, root, c):
  """Exterior angle at x of the triangle (root, x, y) from its side lengths: pi minus the
  interior angle acos((cosh A cosh B - cosh C) / (sinh A sinh B)), A = sqrt(c) d(x, root),
  B = sqrt(c) d(x, y), C = sqrt(c) d(root, y). Equals `oxy_angle` when root = O."""
  root = jnp.broadcast_to(root, x.shape)
  a = jnp.sqrt(c) * distance(x, root, c)
  b = jnp.sqrt(c) * distance(x, y, c)
  cosh_c = -c * inner(root, y, c)  # cosh(sqrt(c) d(root, y)), without the acosh round trip
  sinh_ab = jnp.maximum(jnp.sinh(a) * jnp.sinh(b), EPS)
  return jnp.pi - _acos((jnp.cosh(a) * jnp.cosh(b) - cosh_c) / sinh_ab)


@dataclasses.dataclass(frozen=True)
class Lorentz:
  """`geometry.Geometry` of the hyperboloid of curvature -c (a float: the checkpoint's
  exp(curv), stored as a log and never clamped at inference).

  The root is a point (O, zeros, for MERU's own mapping; the lifted embedding of "" for
  RE's); radius = distance to it, exterior angle by the law of cosines (MERU's oxy_angle
  when the root is O). Retrieval scores are the Lorentzian inner product; centroids are
  taken in the tangent space at O.
  """
  c: float
  name = "lorentz"
  chain_radius = "geodesic"
  has_origin = True
  has_traversal = True
  radius_kinds = ("geodesic",)

  def lift(self, features):
    return exp_map0(features, self.c)

  def radius(self, x, root, kind=None):
    if kind not in (None,) + self.radius_kinds:
      raise errors.UserError(f"radius {kind!r}: the hyperboloid has geodesic")
    return distance(x, jnp.broadcast_to(root, x.shape), self.c)

  def exterior_angle(self, x, y, root):
    return law_of_cosines_angle(x, y, root, self.c)

  def half_aperture(self, x, root, k=MIN_RADIUS):
    """The cone of x seen from the origin (MERU's); `root` is not used."""
    del root
    return half_aperture(x, self.c, k)

  def pullback(self, x, x_orig):
    """mean(cosh(sqrt(c) d(x, x_orig)) - 1) = mean(-c <x, x_orig>_L - 1): zero at the
    pretrained points, smooth there, ~ c d^2 / 2 near them (the sphere's L_p is 1/4 of the
    squared chordal distance; this space's analogue, a choice recorded here)."""
    return jnp.mean(-self.c * inner(x, x_orig, self.c) - 1.0)

  def similarity(self, a, b):
    """Lorentzian inner products [N, M] (higher: closer); numpy or jax, as given."""
    a_t = (1.0 / self.c + (a * a).sum(-1)) ** 0.5
    b_t = (1.0 / self.c + (b * b).sum(-1)) ** 0.5
    return a @ b.T - a_t[:, None] * b_t[None, :]

  def mean(self, x, axis):
    """exp_map0 of the mean of the tangent vectors log_map0(x)."""
    return np.asarray(exp_map0(jnp.mean(log_map0(jnp.asarray(x), self.c), axis=axis), self.c))

  def chart(self, x):
    """log_map0: tangent vectors at the origin (their norm is the distance from it)."""
    return np.asarray(log_map0(jnp.asarray(x, jnp.float32), self.c))
