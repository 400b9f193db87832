"""One run at a time in a workdir: an exclusive lock on `<workdir>/run.lock`.

The lock is an OS file lock (flock) held for the run's life, so it ends with the process
however the process ends: a lock whose holder died (killed, crashed, the machine
rebooted) is stale and is taken over, with a warning naming the old holder. The file
records the holder (host, pid, start time, command) so that a refused run can say who
holds the workdir. The file itself stays after a run (removing it would let two runs
lock two different files of the same name).
"""
import datetime
import fcntl
import json
import os
import socket
import sys

from absl import logging

from hierre_jax.common import errors

LOCK_FILE = "run.lock"


class WorkdirLocked(errors.UserError):
  """Another run holds the workdir."""


def describe(holder):
  if not holder:
    return "a run that recorded no details"
  return (f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}: "
          f"{holder.get('command', '')}")


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir for the block, or raises WorkdirLocked."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.fd = None

  def _holder(self):
    """The holder recorded in the lock file ({} when none or unreadable)."""
    try:
      os.lseek(self.fd, 0, os.SEEK_SET)
      return json.loads(os.read(self.fd, 1 << 16) or b"{}")
    except ValueError:
      return {}

  def acquire(self):
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = self._holder()
      os.close(self.fd)
      self.fd = None
      raise WorkdirLocked(
          f"{os.path.dirname(self.path)}: another run is using this workdir ({describe(holder)})"
          "; wait for it to end or choose another workdir") from None
    previous = self._holder()
    if previous.get("pid") is not None:
      logging.warning("%s: taking over the lock of a run that ended without releasing it (%s)",
                      self.path, describe(previous))
    record = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)}
    os.ftruncate(self.fd, 0)
    os.lseek(self.fd, 0, os.SEEK_SET)
    os.write(self.fd, json.dumps(record).encode())
    os.fsync(self.fd)
    return self

  def release(self):
    if self.fd is None:
      return
    os.ftruncate(self.fd, 0)  # released: no holder recorded
    fcntl.flock(self.fd, fcntl.LOCK_UN)
    os.close(self.fd)
    self.fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
