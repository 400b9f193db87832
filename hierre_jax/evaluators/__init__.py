"""Benchmark evaluators: each an object whose `run(embedder)` returns its metrics."""
