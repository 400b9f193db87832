"""Device mesh and shardings: data parallel over every device, the same code on 1 or many.

The mesh has one axis, 'data'. The batch is split along it and parameters are
replicated; `param_sharding` is the single place to change for FSDP of large
towers (shard the largest axis of big kernels over 'data').
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None):
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  return NamedSharding(mesh, P(DATA_AXIS))


def param_sharding(params, mesh):
  """Sharding of every leaf of a parameter (or train state) tree: replicated (data parallel)."""
  return jax.tree.map(lambda _: replicated(mesh), params)


def check_batch_size(batch_size, mesh):
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {n} devices of the mesh")


def put_global_batch(batch, mesh):
  """Host numpy arrays (any pytree) holding the GLOBAL batch -> arrays sharded on axis 0.

  On a mesh that spans several processes each process passes the same global batch
  and keeps its slice; a mesh of this process's devices takes the whole batch.
  """
  processes = sorted({d.process_index for d in mesh.devices.flat})
  def put(x):
    per_process = x.shape[0] // len(processes)
    start = processes.index(jax.process_index()) * per_process
    return jax.make_array_from_process_local_data(
        batch_sharding(mesh), x[start:start + per_process], x.shape)
  return jax.tree.map(put, batch)


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None):
  """jax.distributed.initialize: Cloud TPU, SLURM and Open MPI set themselves up; elsewhere
  give all three (e.g. 127.0.0.1:12355, 2, 0 and 1 for two processes on one machine).
  A loopback coordinator address is also where process 0 listens (not every interface)."""
  loopback = coordinator_address and coordinator_address.startswith(("127.", "localhost"))
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             coordinator_bind_address=coordinator_address if loopback else None)


def barrier(name, timeout_s=3600):
  """Waits until every process reaches `name` (no-op on one process). Uses the coordination
  service, not a collective: a process may wait here longer than a collective's deadline
  (about 30 s with Gloo on CPU) while process 0 writes files."""
  if jax.process_count() > 1:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    distributed.global_state.client.wait_at_barrier(f"hierre_jax:{name}", timeout_s * 1000)
