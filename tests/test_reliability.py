"""Runs that fail: corrupt checkpoints, changed configs, bad values, a full disk, CLI errors."""
import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import PIL.Image
import pytest

from hierre_jax.common import config_values
from hierre_jax.common import errors
from hierre_jax import models
from hierre_jax import train
from hierre_jax.radial import config as re_config
from hierre_jax.trainer import checkpointing
from hierre_jax.trainer import loop
from hierre_jax.trainer import checks
from hierre_jax.trainer import metric_writer
from hierre_jax.trainer import workdir_lock
from runs import ROOT, python_env, small_disk_or_skip
from tiny_training import tiny_config


def save_two_steps(directory):
  ckpts = checkpointing.RunCheckpoints(directory, 3)
  state = None
  for step in (1, 2):
    state = {"step": jnp.array(step), "params": {"w": jnp.arange(20000.0).reshape(100, 200)
                                                 + step}}
    ckpts.save(step, state)
  ckpts.close()
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def largest_array_file(step_dir):
  return max(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True),
             key=os.path.getsize)


def flip_64_bytes(path):
  data = bytearray(open(path, "rb").read())
  for i in range(64):
    data[len(data) // 2 + i] ^= 0xFF
  open(path, "wb").write(data)


def truncate(path):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])


def empty_metadata(step_dir):
  open(os.path.join(step_dir, "state", "_METADATA"), "w").close()


@pytest.mark.parametrize("damage, reason", [
    (lambda d: flip_64_bytes(largest_array_file(d)), r"1 arrays differ from their saved digests"),
    (lambda d: truncate(largest_array_file(d)), r"OUT_OF_RANGE"),
    (empty_metadata, r"JSONDecodeError"),
])
def test_unusable_latest_step_falls_back_to_the_previous_one(tmp_path, damage, reason, caplog):
  directory = str(tmp_path / "checkpoints")
  abstract = save_two_steps(directory)
  damage(os.path.join(directory, "2"))
  ckpts = checkpointing.RunCheckpoints(directory, 3)
  state, step = ckpts.restore_latest(abstract)
  assert step == 1 and float(state["params"]["w"][0, 0]) == 1.0
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any(f"checkpoint step 2 in {directory} is unusable" in w for w in warnings), warnings
  assert any(__import__("re").search(reason, w) for w in warnings), warnings
  assert all("\n" not in w for w in warnings)  # one line each, not a TensorStore traceback
  assert os.listdir(directory) == ["1"] and os.listdir(directory + "_corrupt") == ["2"]
  ckpts.save(2, state)  # the step can be written again
  ckpts.wait_until_finished()
  ckpts.close()


def test_every_step_unusable_is_an_error_not_a_fresh_start(tmp_path):
  directory = str(tmp_path / "checkpoints")
  abstract = save_two_steps(directory)
  for step in ("1", "2"):
    flip_64_bytes(largest_array_file(os.path.join(directory, step)))
  reader = checkpointing.RunCheckpoints(directory, read_only=True)
  with pytest.raises(checkpointing.CheckpointError, match=r"none of the checkpoints \[2, 1\]"):
    reader.restore_latest_params()
  assert sorted(os.listdir(directory)) == ["1", "2"]  # read-only: nothing moved
  with pytest.raises(checkpointing.CheckpointError, match="use a new workdir"):
    checkpointing.RunCheckpoints(directory).restore_latest(abstract)


def test_corrupt_checkpoint_in_a_run_resumes_from_the_previous_one_without_loss(tmp_path):
  straight = train.train_and_export(tiny_config(tmp_path / "straight"))
  config = tiny_config(tmp_path / "damaged")
  train.train_and_export(config)
  flip_64_bytes(largest_array_file(str(tmp_path / "damaged" / "checkpoints" / "6")))
  resumed = train.train_and_export(config)
  summary = json.loads((tmp_path / "damaged" / "train_summary.json").read_text())
  assert summary["resumed_from"] == 4
  assert os.listdir(tmp_path / "damaged" / "checkpoints_corrupt") == ["6"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.params),
               jax.device_get(straight.params))


def test_changed_config_is_refused_or_recorded(tmp_path):
  config = tiny_config(tmp_path, total_steps=2)
  train.train_and_export(config)
  stored = (tmp_path / "config.json").read_text()
  changed = tiny_config(tmp_path, total_steps=3, lr=5e-4, batch_size=4)
  with pytest.raises(errors.ConfigError, match=r"at step 2 .*batch_size: 8 -> 4; "
                     r"lr: 0.001 -> 0.0005; total_steps: 2 -> 3\. .*--allow_config_change"):
    train.train_and_export(changed)
  assert (tmp_path / "config.json").read_text() == stored  # untouched by the refused run
  train.train_and_export(tiny_config(tmp_path, total_steps=2, log_every=2))  # logging only
  train.train_and_export(changed, allow_config_change=True)
  records = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").open()]
  assert [r["accepted_computational_change"] for r in records] == [False, True]
  assert records[0]["changes"] == {"log_every": {"old": 1, "new": 2}}
  # (the logging-only run saved no step: the record it is compared with is the first run's)
  assert set(records[1]["changes"]) == {"lr", "batch_size", "total_steps"}
  assert json.loads((tmp_path / "config.json").read_text())["lr"] == 5e-4  # step 3 saved


def test_the_stored_config_is_the_one_the_saved_steps_were_trained_with(tmp_path):
  config = tiny_config(tmp_path, total_steps=2)
  train.train_and_export(config)
  # A changed run that saves no step (here: none left to train) leaves the record as it was,
  # so the original config resumes without a word, and a later refusal names the truth.
  train.train_and_export(tiny_config(tmp_path, total_steps=2, lr=1e10),
                         allow_config_change=True)
  assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-3
  train.train_and_export(config)
  with pytest.raises(errors.ConfigError, match=r"lr: 0.001 -> 0.0005"):
    train.train_and_export(tiny_config(tmp_path, total_steps=2, lr=5e-4))


def test_a_changed_training_file_is_refused_on_resume(tmp_path):
  csv_path = tmp_path / "train.csv"
  shutil.copy(tiny_config(tmp_path).train_csv, csv_path)
  config = tiny_config(tmp_path / "w", total_steps=2, train_csv=str(csv_path))
  train.train_and_export(config)
  lines = csv_path.read_text().splitlines(keepends=True)
  csv_path.write_text("".join(lines[:-1]))  # one row fewer
  with pytest.raises(errors.ConfigError, match=rf"config.train_csv={csv_path}: its content "
                     r"changed since step 2 was trained on it \(SHA-256 differs"):
    train.train_and_export(config, allow_config_change=False)
  train.train_and_export(config, allow_config_change=True)  # knowingly: goes on


def test_run_from_before_scanned_layers_resumes_in_its_own_layout(tmp_path):
  train.train_and_export(tiny_config(tmp_path, total_steps=2, scan_layers=False,
                                     pullback_cache=False))
  stored = json.loads((tmp_path / "config.json").read_text())
  # A config.json written before these keys (and before packing).
  for key in ("scan_layers", "pullback_cache", "pack_texts", "pack_rows_multiple"):
    del stored[key]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  with pytest.raises(errors.ConfigError, match=r"scan_layers: False -> True"):
    train.train_and_export(tiny_config(tmp_path, total_steps=2))
  state = train.train_and_export(tiny_config(tmp_path, total_steps=2, scan_layers=False))
  assert int(state.step) == 2 and "layers_1" in state.params["text_model"]["encoder"]
  # Packing changes how the work is laid out, not the losses: recorded, not refused.
  (change,) = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").open()]
  assert change["changes"]["pack_texts"] == {"old": False, "new": True}
  assert not change["accepted_computational_change"]


def test_keys_that_do_not_change_the_computation():
  rules = re_config.RESUME_RULES
  assert not rules.is_computational("eval.test_csv")
  assert not rules.is_computational("log_every")
  assert not rules.is_computational("pack_texts")  # RE's layout
  assert config_values.ResumeRules().is_computational("pack_texts")
  assert rules.is_computational("random_init.text.hidden_size")
  assert rules.is_computational("lambda_p")
  assert checks.changed_keys({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}) == {
      "a.b": (1, 2)}


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 0, r"config.batch_size=0: must be a positive integer"),
    ("batch_size", -4, r"config.batch_size=-4"),
    ("log_every", 0, r"config.log_every=0"),
    ("pack_rows_multiple", 0, r"config.pack_rows_multiple=0: must be a positive integer"),
    ("keep_checkpoints", 0, r"keep at least 1"),
    ("tiers", (0, 2, 2), r"config.tiers=\(0, 2, 2\): two or more"),
    ("tiers", (3,), r"config.tiers"),
    ("loss", "cone", r"config.loss='cone': use one of \('re', 'ec', 'contrastive'\)"),
    ("loss", "contrastive", r"config.loss='contrastive' needs config.train_images_dir"),
    ("root", "median", r"config.root='median': use one of"),
    ("trainable", "root", r"config.trainable='root' with config.root='empty_string'"),
    ("compute_dtype", "float16", r"config.compute_dtype='float16': use one of \('float32', "
                                 r"'bfloat16'\)"),
])
def test_values_that_cannot_work_are_named_before_anything_is_written(tmp_path, key, value,
                                                                      message):
  config = tiny_config(tmp_path / "w", **{key: value})
  with pytest.raises(errors.ConfigError, match=message):
    train.train_and_export(config)
  assert not (tmp_path / "w").exists()


def test_bad_training_file_is_named_before_anything_is_written(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("positive,negative,image_url\na => b,c => d => e => f,u\n")
  with pytest.raises(errors.DataError, match="bad.csv: row 1"):
    train.train_and_export(tiny_config(tmp_path / "w", train_csv=str(bad)))
  assert not (tmp_path / "w").exists()


def test_skipped_rows_are_written_to_the_workdir(tmp_path):
  rows = open(tiny_config(tmp_path).train_csv).read().splitlines()
  csv_path = tmp_path / "some_bad.csv"
  csv_path.write_text("\n".join(rows[:5] + ['"a => b","c => d => e => f",u'] + rows[5:]) + "\n")
  train.train_and_export(tiny_config(tmp_path / "w", train_csv=str(csv_path), total_steps=1,
                                     skip_bad_rows=True))
  skipped = json.loads((tmp_path / "w" / "skipped_rows.json").read_text())
  assert skipped["file"] == str(csv_path)
  assert skipped["rows"] == [{"row": 5, "reason": "row 5 (line 6), column 'positive': expected "
                              "4 tiers separated by '=>', got 2: 'a => b'"}]


def test_runtime_options_apply_when_called_from_python(tmp_path):
  cache = str(tmp_path / "xla_cache")
  session_cache = jax.config.jax_compilation_cache_dir  # the tests' (conftest)
  try:
    train.train_and_export(tiny_config(tmp_path / "w", total_steps=1, matmul_precision="high",
                                       compilation_cache_dir=cache))
    assert jax.config.jax_default_matmul_precision == "high"
    assert jax.config.jax_compilation_cache_dir == cache
  finally:
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_compilation_cache_dir", session_cache)


def run_train_cli(*args, workdir, prefix=()):
  command = list(prefix) + [sys.executable, "-m", "hierre_jax.train", "--config",
                            "tests/tiny_train_config.py", f"--config.workdir={workdir}", *args]
  return subprocess.run(command, env=python_env(1), cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


def assert_one_line_error(out, message):
  assert out.returncode == 1, out.stderr[-3000:]
  lines = out.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and message in lines[-1], lines[-5:]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]


def test_cli_errors_are_one_line(tmp_path):
  out = run_train_cli("--config.nosuchkey=1", workdir=tmp_path / "a")
  assert_one_line_error(out, "--config.nosuchkey=1: no such config key 'nosuchkey'")
  out = run_train_cli("--config.batch_size=0", workdir=tmp_path / "b")
  assert_one_line_error(out, "config.batch_size=0: must be a positive integer")
  assert "Unable to initialize backend" not in out.stderr  # no libtpu INFO line on a CPU
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_full_disk_is_one_line_naming_the_directory(tmp_path):
  mount_point = small_disk_or_skip(tmp_path)
  workdir = mount_point / "w"
  # 20 MB hold the random model and model_info but not the first checkpoint (~20 MB).
  out = run_train_cli(workdir=workdir, prefix=[
      "unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=20m tmpfs {mount_point} && '
      'exec "$@"', "sh"])
  assert_one_line_error(out, f"no space left on device writing {workdir}/checkpoints "
                             "(checkpoint step 2 needs about")
  assert len(out.stderr.splitlines()) < 20, out.stderr[-3000:]


def test_diverged_run_stops_at_the_first_non_finite_step_keeping_the_good_checkpoints(tmp_path):
  # lr ramps from 0 to 1e10: the first steps are finite, then the weights blow up.
  config = tiny_config(tmp_path, lr=1e10, schedule="warmup_cosine", warmup_steps=4,
                       checkpoint_every=1, log_every=1)
  with pytest.raises(loop.DivergedError, match=r"training diverged at step (\d+): .*loss.* not "
                     r"finite .*The last good checkpoint is step (\d+) in ") as info:
    train.train_and_export(config)
  bad, good = map(int, __import__("re").search(r"step (\d+):.*step (\d+) in", str(info.value))
                  .groups())
  assert 1 < bad and good == bad - 1
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == list(range(1, bad))
  assert not (tmp_path / "export").exists() and not (tmp_path / "checkpoints_corrupt").exists()
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
  assert [r["step"] for r in rows] == list(range(1, bad))
  assert all(np.isfinite(v) for r in rows for v in r.values())


@pytest.mark.parametrize("key, value", [("lr", float("nan")), ("lambda_p", float("nan")),
                                        ("lr", float("inf")), ("warmup_steps", -1),
                                        ("b2", 1.0), ("eps", 0.0), ("schedule", "linear"),
                                        ("weight_decay", -0.1), ("matmul_precision", "low")])
def test_non_finite_and_out_of_range_values_are_refused(tmp_path, key, value):
  with pytest.raises(errors.ConfigError, match=f"config.{key}={value!r}: "):
    train.train_and_export(tiny_config(tmp_path / "w", **{key: value}))
  assert not (tmp_path / "w").exists()


def test_evaluation_refuses_non_finite_features(tiny_clip_dir):
  from hierre_jax.common import errors
  from hierre_jax import embedding
  model = models.load(tiny_clip_dir)
  broken = jax.tree.map(np.array, model.params)
  broken["text_projection"]["kernel"][:, 0] = np.nan
  embedder = embedding.Embedder(model.with_params(broken))
  with pytest.raises(errors.NonFiniteError, match=r"text features .* of 3 texts: 3 of 3 hold NaN"):
    embedder.texts(["a", "b"])
  broken["visual_projection"]["kernel"][:, 0] = np.inf
  with pytest.raises(errors.NonFiniteError, match=r"image features of 2 images: 2 of 2 hold"):
    embedding.Embedder(model.with_params(broken)).images(
        [PIL.Image.new("RGB", (32, 32))] * 2)


def test_changed_state_layout_is_refused_without_moving_checkpoints(tmp_path):
  directory = str(tmp_path / "checkpoints")
  abstract = save_two_steps(directory)
  grown = {**abstract, "params": {**abstract["params"], "root": jax.ShapeDtypeStruct((4,),
                                                                                    np.float32)}}
  with pytest.raises(checkpointing.CheckpointMismatch,
                     match=r"checkpoints/2: .*only in this run: 1 \['params/root'\].*left as "
                     "they are.*--allow_config_change"):
    checkpointing.RunCheckpoints(directory).restore_latest(grown)
  assert sorted(os.listdir(tmp_path)) == ["checkpoints"]
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_root_change_resumes_partially_when_asked_and_never_loses_checkpoints(tmp_path):
  train.train_and_export(tiny_config(tmp_path, total_steps=4))
  saved = sorted(os.listdir(tmp_path / "checkpoints"))
  with pytest.raises(errors.ConfigError, match=r"root: 'empty_string' -> 'origin'"):
    train.train_and_export(tiny_config(tmp_path, total_steps=6, root="origin"))
  state = train.train_and_export(tiny_config(tmp_path, total_steps=6, root="origin"),
                                 allow_config_change=True)
  assert not (tmp_path / "checkpoints_corrupt").exists()
  assert set(saved) <= set(os.listdir(tmp_path / "checkpoints"))
  assert json.loads((tmp_path / "train_summary.json").read_text())["resumed_from"] == 4
  record = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").open()][-1]
  assert record["resumed_at_step"] == 4 and "params/root" in record["state_leaves_started_afresh"]
  assert not any(name.startswith("params/text_model")
                 for name in record["state_leaves_started_afresh"])
  np.testing.assert_array_equal(jax.device_get(state.params["root"]), 0.0)  # origin, fixed


def test_quarantined_steps_and_no_good_one_is_an_error_not_a_fresh_start(tmp_path):
  config = tiny_config(tmp_path, total_steps=4)
  train.train_and_export(config)
  for step in ("2", "4"):
    flip_64_bytes(largest_array_file(str(tmp_path / "checkpoints" / step)))
  metrics = (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(checkpointing.CheckpointError, match=r"none of the checkpoints \[4, 2\]"):
    train.train_and_export(config)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"checkpoints: no checkpoint, but .*checkpoints_corrupt holds the "
                     r"steps \[2, 4\] .*start over knowingly"):
    train.train_and_export(config)
  assert (tmp_path / "metrics.jsonl").read_text() == metrics


def test_resume_keeps_every_metrics_row(tmp_path):
  (tmp_path / "metrics.jsonl").parent.mkdir(exist_ok=True)
  rows = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4)]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  metric_writer.MetricWriter(str(tmp_path), resume_step=2).close()
  assert metric_writer.read_metrics(str(tmp_path)) == rows[:2]
  superseded = [json.loads(line) for line in (tmp_path / "metrics_superseded.jsonl").open()]
  assert superseded == [{**r, "resumed_at": 2} for r in rows[2:]]


def tensorboard_scalars(logdir):
  """{(step, tag): value} of every scalar in the TensorBoard event files under `logdir`,
  read as TFRecords (length, CRC, Event proto, CRC)."""
  import struct
  from tensorboardX.proto import event_pb2
  out = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    data = open(path, "rb").read()
    while data:
      (length,) = struct.unpack("<Q", data[:8])
      event = event_pb2.Event.FromString(data[12:12 + length])
      data = data[16 + length:]
      out.update({(event.step, v.tag): v.simple_value for v in event.summary.value})
  return out


def test_tensorboard_shows_the_names_of_metrics_jsonl(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  writer.write(3, {"loss": 0.5, "eval/coco/i2t_r@1": 0.25, "eval/breeds/mean/r@5": 0.75})
  writer.close()
  assert tensorboard_scalars(str(tmp_path / "tensorboard")) == {
      (3, "loss"): 0.5, (3, "eval/coco/i2t_r@1"): 0.25, (3, "eval/breeds/mean/r@5"): 0.75}


def test_a_second_run_in_a_held_workdir_is_refused_in_one_line(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from hierre_jax.trainer import workdir_lock; "
       f"workdir_lock.WorkdirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); "
       "time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLocked, match=f"{tmp_path}: another run is using "
                       f"this workdir \\(host .*, pid {holder.pid}, since "):
      train.train_and_export(tiny_config(tmp_path, total_steps=1))
    assert sorted(os.listdir(tmp_path)) == ["run.lock"]  # nothing else written
  finally:
    holder.kill()
    holder.wait()
  # The holder died without releasing: its lock is stale and is taken over.
  state = train.train_and_export(tiny_config(tmp_path, total_steps=1))
  assert int(state.step) == 1
  assert (tmp_path / "run.lock").read_text() == ""  # released


def test_a_run_of_a_renamed_value_resumes_and_the_old_name_is_pointed_to(tmp_path):
  # A run started when the contrastive objective was named "clip" resumes under the new name.
  resumed = tiny_config(tmp_path, loss="contrastive", train_images_dir="x")
  stored = dict(checks.config_json(resumed), loss="clip")
  (tmp_path / "config.json").write_text(json.dumps(stored))
  checks.check_resume(str(tmp_path), resumed, 2, re_config.RESUME_RULES,
                      record=False)  # no change: not refused
  with pytest.raises(errors.ConfigError, match=r"loss: 're' -> 'contrastive'"):
    (tmp_path / "config.json").write_text(json.dumps(dict(stored, loss="re")))
    checks.check_resume(str(tmp_path), resumed, 2, re_config.RESUME_RULES, record=False)
  with pytest.raises(errors.ConfigError, match=r"config.loss='clip': use one of \('re', 'ec', "
                     r"'contrastive'\) \(renamed 'contrastive'\)"):
    re_config.validate(tiny_config(tmp_path, loss="clip"))
