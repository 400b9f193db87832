"""The sphere with a root vector (SPEC section 2): the geometry of CLIP and ALIGN features.

Radius from the root, exterior angle and entailment cone of unit-normalised embeddings; all
functions broadcast over leading axes.
Gradients are finite everywhere: degenerate inputs (a zero difference vector,
cosine at +-1) get a defined value and a zero or bounded derivative.
"""
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors

# Squared norms below this count as zero vectors.
TINY = 1e-12
# The cosine is clipped to [-1 + COS_MARGIN, 1 - COS_MARGIN] before arccos.
COS_MARGIN = 1e-6


def safe_norm(v):
  """[..., D] -> ([...] norm, [...] bool is_nonzero); the gradient at v == 0 is zero."""
  sq = jnp.sum(v * v, axis=-1)
  nonzero = sq > TINY
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0), nonzero


def normalize(v):
  """[..., D] -> unit vectors (zero vectors stay zero)."""
  n, nonzero = safe_norm(v)
  return v / jnp.where(nonzero, n, 1.0)[..., None]


def radius(x, root):
  """Genericness d(x) = ||x - r||: [..., D], [D] -> [...]."""
  return safe_norm(x - root)[0]


def cosine_distance(x, root):
  """1 - <x, r>: [..., D], [D] -> [...]. The release's radius for qualitative chains; for
  unit vectors a monotone function of `radius` (||x - r||^2 = 2 (1 - <x, r>))."""
  return 1.0 - jnp.sum(x * root, axis=-1)


def exterior_angle(x, y, root):
  """ext(x, y) = angle between x - r and y - x, in [0, pi]: [..., D] x2, [D] -> [...].

  pi/2 (with zero gradient) when y == x or x == r, where the angle is undefined.
  """
  u, w = x - root, y - x
  nu, ok_u = safe_norm(u)
  nw, ok_w = safe_norm(w)
  ok = ok_u & ok_w
  cos = jnp.sum(u * w, axis=-1) / jnp.where(ok, nu * nw, 1.0)
  cos = jnp.where(ok, jnp.clip(cos, -1.0 + COS_MARGIN, 1.0 - COS_MARGIN), 0.0)
  return jnp.arccos(cos)


def half_aperture(x, root, k):
  """Entailment-cone half-aperture psi(x) = arcsin(min(1, K / ||x - r||)): [..., D] -> [...].

  The ratio is clipped at 1 - COS_MARGIN (psi within 2e-3 of pi/2 inside the clip), so
  that the gradient stays finite (zero) where ||x - r|| <= K.
  """
  ratio = k / jnp.maximum(radius(x, root), k)
  return jnp.arcsin(jnp.minimum(ratio, 1.0 - COS_MARGIN))


class Sphere:
  """`geometry.Geometry` of unit vectors with a root vector r."""

  name = "sphere"
  chain_radius = "cosine"
  has_origin = False
  has_traversal = False
  RADII = {"euclidean": radius, "cosine": cosine_distance}
  radius_kinds = tuple(RADII)

  def lift(self, features):
    return normalize(features)

  def radius(self, x, root, kind=None):
    """kind: "euclidean" ||x - r|| (None; RE's radius, the release's quantitative levels)
    or "cosine" 1 - <x, r> (the release's qualitative chains)."""
    kind = kind or "euclidean"
    if kind not in self.RADII:
      raise errors.UserError(f"radius {kind!r}: the sphere has {', '.join(self.RADII)}")
    return self.RADII[kind](x, root)

  def exterior_angle(self, x, y, root):
    return exterior_angle(x, y, root)

  def half_aperture(self, x, root, k):
    return half_aperture(x, root, k)

  def pullback(self, x, x_orig):
    """L_p = (1 - mean <x, x_orig>) / 2, the paper's."""
    return (1.0 - jnp.mean(jnp.sum(x * x_orig, axis=-1))) / 2.0

  def similarity(self, a, b):
    """<a_i, b_j>, the cosine of unit vectors."""
    return a @ b.T

  def mean(self, x, axis):
    """The normalised mean (prompt ensembles, class centroids)."""
    mean = x.mean(axis=axis)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)

  def chart(self, x):
    return np.asarray(x)


SPHERE = Sphere()
