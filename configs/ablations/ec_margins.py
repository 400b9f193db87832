"""Table 5: entailment-cone margin losses in place of the RE angle terms, four margins
(the rows are ec_margin_1.py .. ec_margin_4.py).

The paper's K and margins are not legible in our copy; this sweep is our choice: K = 0.1
and m = 0.05, 0.2, 0.8, 3.2 (x4 apart). psi(x) = arcsin(min(1, K / ||x - r||)) is 0.1 to
0.2 rad at the radii of CLIP's texts; at m = 3.2 > pi every hinge is active, the limit in
which the EC terms of a pair sum to the RE term plus 2m (SPEC section 6).
"""
from configs.ablations import common

K = 0.1
MARGINS = (0.05, 0.2, 0.8, 3.2)


def apply_margin(index):
  """-> apply(config) of the `index`-th margin (1-based; configs/ablations/ec_margin_<i>.py)."""
  def apply(config):
    config.loss = "ec"
    config.ec_k, config.ec_margin = K, MARGINS[index - 1]
  return apply
