"""Running the project as a user does in tests: the repository's paths, subprocess
environments on simulated devices, killing a run at its first checkpoint, and small real
evaluation files."""
import csv
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import shared_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SHARED_ROOT = os.path.join(ROOT, "..", "shared")


def python_env(devices):
  """This environment (its XLA flags kept: tests/numeric_configurations.sh) on `devices`
  simulated CPU devices."""
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(
      [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={devices}"]))


def run_python(args, devices=8):
  return subprocess.run([sys.executable] + args, env=python_env(devices), cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def kill_at_first_checkpoint(proc, checkpoints_dir, timeout=400):
  """SIGKILLs `proc` as soon as a checkpoint step appears in `checkpoints_dir`."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if checkpoints_dir.exists() and any(p.name.isdigit() for p in checkpoints_dir.iterdir()):
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def small_eval_files(out_dir, num_rows=24):
  """The first rows of the real test set, and the expanded rows of their images."""
  with open(shared_file("hierarcaps_test.csv"), newline="") as f:
    rows = list(csv.reader(f))[:num_rows + 1]
  test_csv = os.path.join(out_dir, "test.csv")
  with open(test_csv, "w", newline="") as f:
    csv.writer(f).writerows(rows)
  images = {r[2].rsplit("/", 1)[-1] for r in rows[1:]}
  with gzip.open(shared_file("hierarcaps_test_expanded.csv.gz"), "rt", newline="") as f:
    expanded = list(csv.reader(f))
  heldout_csv = os.path.join(out_dir, "heldout.csv")
  with open(heldout_csv, "w", newline="") as f:
    csv.writer(f).writerows([expanded[0]] + [r for r in expanded[1:]
                                             if r[2].rsplit("/", 1)[-1] in images])
  return test_csv, heldout_csv


def small_disk_or_skip(tmp_path):
  """A folder to mount a small tmpfs on inside `unshare -rm` (a private mount namespace):
  skips the test where this machine cannot."""
  mount_point = tmp_path / "small_disk"
  mount_point.mkdir()
  if shutil.which("unshare") is None:
    pytest.skip("no unshare here: cannot mount a small tmpfs")
  probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                          f"mount -t tmpfs -o size=1m tmpfs {mount_point}"],
                         capture_output=True, text=True)
  if probe.returncode:
    pytest.skip(f"cannot mount a small tmpfs here: {probe.stderr.strip()}")
  return mount_point
