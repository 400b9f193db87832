"""The space a model family embeds into, behind one interface (`Geometry`): every radial
quantity (radius from the root, exterior angle, entailment-cone aperture), the retrieval
scores and the averages of features go through a family's geometry, so that another space
(MERU's Lorentz hyperboloid) is a second implementation, not a branch in every evaluator.

`sphere.SPHERE`: unit vectors with a root vector (CLIP, ALIGN; SPEC section 2).
`lorentz.Lorentz(c)`: MERU's hyperboloid. `flat.FLAT`: R^P, the hyperbolic study's control.
"""
from typing import Protocol


class Geometry(Protocol):
  """Functions of points of one space; jnp or numpy arrays, broadcast over leading axes."""

  name: str
  radius_kinds: tuple  # the kinds `radius` takes, the space's own first
  chain_radius: str  # the `radius` kind of qualitative chains (the release's on the sphere)
  has_origin: bool  # an origin a root may be (the hyperboloid's O, flat space's 0; not the sphere)
  has_traversal: bool  # MERU's image traversal (evaluators/traversal.py) is defined here

  def lift(self, features):
    """[..., P] encoder outputs -> [..., P] points of the space (jnp)."""

  def radius(self, x, root, kind=None):
    """[..., P], [P] -> [...] genericness: distance from the root (`kind` names a variant
    where the space has several, e.g. the sphere's "cosine"; None: the space's own)."""

  def exterior_angle(self, x, y, root):
    """[..., P] x2, [P] -> [...] angle at x between the ray from the root and y, in [0, pi]."""

  def half_aperture(self, x, root, k):
    """[..., P], [P], scalar K -> [...] half-aperture of the entailment cone at x."""

  def pullback(self, x, x_orig):
    """[..., P] x2 -> scalar: how far fine-tuned points moved from the pretrained ones (RE's
    pull-back term L_p, SPEC section 3, in this space)."""

  def similarity(self, a, b):
    """[N, P], [M, P] -> [N, M] retrieval scores (higher: more alike); numpy in, numpy out."""

  def mean(self, x, axis):
    """Points -> their centroid along `axis`, a point of the space (numpy)."""

  def chart(self, x):
    """[..., P] points -> [..., P] Euclidean coordinates (numpy) in which Euclidean methods
    (Ward linkage) run: the sphere's vectors themselves; the hyperboloid's tangent vectors
    at the origin."""
