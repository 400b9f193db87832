"""Benchmarks, `python -m benchmarks.<name>`: each compares hierre_jax with its reference
side by side in one run, on the same threads. Importing this package pins the process to
HIERRE_BENCH_THREADS cores (default: every core it may use) before JAX starts (XLA sizes
its CPU thread pool by the process's affinity) and gives PyTorch as many intra-op threads,
and says so."""
import importlib.util
import os

THREADS_VARIABLE = "HIERRE_BENCH_THREADS"


def _pin_threads():
  cores = sorted(os.sched_getaffinity(0))
  wanted = int(os.environ.get(THREADS_VARIABLE, len(cores)))
  if not 1 <= wanted <= len(cores):
    raise SystemExit(f"{THREADS_VARIABLE}={wanted}: this process may use {len(cores)} cores")
  os.sched_setaffinity(0, cores[:wanted])
  if importlib.util.find_spec("torch"):
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(wanted)
  print(f"threads: {wanted} (cores {cores[:wanted]}) for XLA's CPU pool and "
        f"torch.set_num_threads ({THREADS_VARIABLE})", flush=True)
  return wanted


THREADS = _pin_threads()
