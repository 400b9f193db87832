"""HierarCaps P, R, tau_d (SPEC section 4) as an evaluator of the suite."""
from hierre_jax import evaluation


class HierarCaps:
  """The 50-radius retrieval metrics on a HierarCaps test file and its images."""

  name = "hierarcaps"

  def __init__(self, test_csv, images_dir, ties="release"):
    self.test_csv, self.images_dir, self.ties = test_csv, images_dir, ties

  def run(self, embedder):
    return evaluation.evaluate_hierarcaps(embedder, self.test_csv, self.images_dir,
                                          ties=self.ties)
