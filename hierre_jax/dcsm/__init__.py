"""Dense Cosine Similarity Maps (DCSM, seed 001; ../shared/DCSM_SPEC.md): score an (image,
caption) pair from the cosines between every image token and every caption token of a
frozen CLIP with a small trained CNN.

  maps.py        the maps, functional rows, z-scoring; `dense_maps` (public)
  scorer.py      the CNN (Flax) and its PyTorch state-dict layout
  checkpoint.py  scorer folders; the released PyTorch checkpoint's import
  scoring.py     DCSM as a pair scorer; `score` (public): every image against every caption
  training.py    the release's contrastive step with hard negatives, on trainer/loop.py
  procedural.py  offline training and test data with the release's conventions
  benchmarks.py  readers of the real benchmarks' formats
  evaluate.py    DCSM beside the global cosine -> results.json / results.md
"""
from hierre_jax.dcsm.maps import dense_maps
from hierre_jax.dcsm.scoring import score

__all__ = ["dense_maps", "score"]
