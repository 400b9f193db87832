"""Benchmark evaluators: each an object whose `run(embedder)` returns its metrics, and a
`registry.Entry` its module registers. The modules are imported here in the order of the
summary table's columns (`tables.TABLE`); a new evaluator is one more module and line."""
# pylint: disable=g-bad-import-order  (registration order, not alphabetical)
from hierre_jax.evaluators import hierarcaps  # noqa: F401
from hierre_jax.evaluators import hyperlex  # noqa: F401
from hierre_jax.evaluators import breeds  # noqa: F401
from hierre_jax.evaluators import retrieval  # noqa: F401  (coco, flickr30k)
from hierre_jax.evaluators import zero_shot  # noqa: F401  (cifar10, cifar100)
