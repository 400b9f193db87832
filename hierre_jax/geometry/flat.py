"""Flat Euclidean space R^P with a root point: the control of the hyperbolic study
(docs/hyperbolic_study.md). A hyperbolic family's tangent vectors at the origin taken as
points themselves, with no exponential map: the same towers and parameters as the
hyperboloid's, only the space differs.

Radius, exterior angle and cone are the sphere module's formulas, which hold for any
vectors; the sphere's normalisation is what this space leaves out.
"""
import jax.numpy as jnp
import numpy as np

from hierre_jax.common import errors
from hierre_jax.geometry import sphere


class Flat:
  """`geometry.Geometry` of R^P: points as the encoders give them, a root point r."""

  name = "flat"
  chain_radius = "euclidean"
  has_origin = True
  has_traversal = False
  radius_kinds = ("euclidean",)

  def lift(self, features):
    return jnp.asarray(features)

  def radius(self, x, root, kind=None):
    """||x - r||."""
    if kind not in (None,) + self.radius_kinds:
      raise errors.UserError(f"radius {kind!r}: flat space has euclidean")
    return sphere.radius(x, root)

  def exterior_angle(self, x, y, root):
    return sphere.exterior_angle(x, y, root)

  def half_aperture(self, x, root, k):
    return sphere.half_aperture(x, root, k)

  def pullback(self, x, x_orig):
    """mean ||x - x_orig||^2 / 4: the sphere's L_p written as the squared distance it equals
    for unit vectors."""
    return jnp.mean(jnp.sum((x - x_orig) ** 2, axis=-1)) / 4.0

  def similarity(self, a, b):
    """-||a_i - b_j||^2 (higher: closer); numpy in, numpy out."""
    return -((a * a).sum(-1)[:, None] - 2.0 * a @ b.T + (b * b).sum(-1)[None, :])

  def mean(self, x, axis):
    return np.asarray(x).mean(axis=axis)

  def chart(self, x):
    return np.asarray(x)


FLAT = Flat()
