"""No output lands on an input, another run's folder is never written into, a workdir's
random checkpoint is the one its config names, and what a run writes and reads back
(random checkpoint, model_info, ablation results) is sealed and verified on every read."""
import hashlib
import os

import pytest
import safetensors.numpy

from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import locations
from hierre_jax import models
from hierre_jax.common import sealed
from hierre_jax import train
from runs import SHARED_ROOT
from tiny_training import tiny_config, tiny_model


def sha256(path):
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_check_apart_names_the_output_and_the_input(tmp_path):
  data = tmp_path / "data"
  (data / "sub").mkdir(parents=True)
  inputs = [("--data_dir", str(data))]
  for out, relation in ((data, "is"), (data / "sub" / "x", "lies inside"), (tmp_path, "contains")):
    with pytest.raises(errors.UserError, match=rf"--output_dir={out} {relation} the input "
                       rf"--data_dir={data}: choose"):
      locations.check_apart([("--output_dir", str(out))], inputs)
  locations.check_apart([("--output_dir", str(tmp_path / "elsewhere"))], inputs)
  locations.check_apart([("--output_dir", str(data / "sub"))], inputs, allowed=[str(data / "sub")])
  locations.check_apart([("--output_dir", str(data))], [("--model", "org/hub-id")])


def test_claim_refuses_another_runs_folder(tmp_path):
  owner = {"writer": "test", "model": "a"}
  out = str(tmp_path / "out")
  locations.claim(out, owner, "--output_dir")
  locations.claim(out, owner, "--output_dir")  # the same owner again: fine
  with pytest.raises(errors.UserError, match=r"--output_dir=.*out holds files written by "
                     r"\{'writer': 'test', 'model': 'a'\}, not .*'b'"):
    locations.claim(out, {"writer": "test", "model": "b"}, "--output_dir")
  (tmp_path / "theirs").mkdir()
  (tmp_path / "theirs" / "notes.txt").write_text("keep")
  with pytest.raises(errors.UserError, match="holds files not written by this command"):
    locations.claim(str(tmp_path / "theirs"), owner, "--output_dir")
  assert os.listdir(tmp_path / "theirs") == ["notes.txt"]


def test_an_export_over_the_source_model_or_the_workdir_is_refused_before_any_work(tmp_path):
  model_dir = tiny_model(tiny_config(tmp_path), str(tmp_path / "model"))
  before = sha256(os.path.join(model_dir, "model.safetensors"))
  config = tiny_config(tmp_path / "w", total_steps=1, model=model_dir, export_dir=model_dir)
  config.random_init = None
  with pytest.raises(errors.UserError, match=rf"config.export_dir={model_dir} is the input "
                     rf"config.model={model_dir}"):
    train.train_and_export(config)
  config.export_dir = str(tmp_path / "w")
  with pytest.raises(errors.UserError, match="config.export_dir=.*the workdir's own files"):
    train.train_and_export(config)
  config.export_dir = str(tmp_path / "w" / "checkpoints")
  with pytest.raises(errors.UserError, match="config.export_dir=.*the workdir's own files"):
    train.train_and_export(config)
  config.update(export_dir="", workdir=os.path.join(model_dir, "run"))
  with pytest.raises(errors.UserError, match="config.workdir=.*lies inside the input "
                     "config.model"):
    train.train_and_export(config)
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "weights.bin").write_bytes(b"theirs")
  config.update(workdir=str(tmp_path / "w"), export_dir=str(tmp_path / "full"))
  with pytest.raises(errors.UserError, match="config.export_dir=.*full holds files not written"):
    train.train_and_export(config)
  assert sha256(os.path.join(model_dir, "model.safetensors")) == before
  assert not (tmp_path / "w").exists() and os.listdir(tmp_path / "full") == ["weights.bin"]
  # A new folder is claimed for the run; the same run exports there again.
  config.export_dir = str(tmp_path / "export")
  train.train_and_export(config)
  train.train_and_export(config)  # the finished run again: exports over its own export
  assert locations.owner_of(config.export_dir)["workdir"] == str((tmp_path / "w").resolve())
  # A damaged source model is refused before the workdir is created.
  path = os.path.join(model_dir, "model.safetensors")
  open(path, "r+b").truncate(100)
  config.update(workdir=str(tmp_path / "new"), export_dir="")
  with pytest.raises(Exception, match="model.safetensors"):
    train.train_and_export(config)
  assert not (tmp_path / "new").exists()


def test_write_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
  out = tmp_path / "set"
  out.mkdir()
  (out / "old.txt").write_text("old")

  def fail(tmp):
    os.makedirs(os.path.join(tmp, "sub"))
    open(os.path.join(tmp, "sub", "half.txt"), "w").write("half")
    raise KeyboardInterrupt  # a writer killed halfway

  with pytest.raises(KeyboardInterrupt):
    sealed.write_folder(str(out), fail)
  assert sorted(os.listdir(out)) == ["old.txt"]

  def write(tmp):
    os.makedirs(os.path.join(tmp, "sub"))
    open(os.path.join(tmp, "sub", "a.txt"), "w").write("a")
    open(os.path.join(tmp, "b.txt"), "w").write("b")
    return {"seed": 3}

  assert sealed.write_folder(str(out), write) == str(out)
  assert sorted(os.listdir(out)) == ["b.txt", sealed.MANIFEST, "sub"]
  assert sorted(os.listdir(tmp_path)) == ["set"]  # the killed writer's leftover cleared
  assert sealed.verify(str(out)) == {"seed": 3}
  (out / "sub" / "a.txt").write_text("A")  # files in sub-folders are sealed
  with pytest.raises(sealed.DamagedError, match=r"sub/a.txt: changed or damaged"):
    sealed.verify(str(out))


def test_random_init_is_the_one_the_config_names(tmp_path):
  config = tiny_config(tmp_path, total_steps=1)
  train.train_and_export(config)
  random_init = tmp_path / "random_init"
  assert sealed.verify(str(random_init)) == config.random_init.to_dict()
  config.random_init.text.hidden_size = 64
  config.random_init.text.intermediate_size = 128
  # Refused by the resume check, and by the seal when the config check is waived.
  with pytest.raises(errors.ConfigError, match="random_init.text.hidden_size: 32 -> 64"):
    train.train_and_export(config)
  (tmp_path / "config.json").unlink()
  with pytest.raises(errors.UserError, match=r"random_init was written for another "
                     r"config.random_init \(random_init.text.hidden_size: 32 -> 64; "
                     r"random_init.text.intermediate_size: 64 -> 128\)"):
    train.train_and_export(config)
  # Asked knowingly, the new one is written and trained.
  config.total_steps = 2
  train.train_and_export(config, allow_config_change=True)
  exported = models.load(str(tmp_path / "export"))
  assert exported.config.text.hidden_size == 64
  # A damaged random checkpoint is written again, never used.
  path = random_init / "model.safetensors"
  tensors = safetensors.numpy.load_file(str(path))
  key = "text_projection.weight"
  tensors[key] = tensors[key] + 1
  safetensors.numpy.save_file(tensors, str(path))
  with pytest.raises(sealed.DamagedError):
    sealed.verify(str(random_init))
  train.train_and_export(config)
  assert sealed.verify(str(random_init)) == config.random_init.to_dict()
  assert (safetensors.numpy.load_file(str(path))[key] != tensors[key]).all()


def test_total_steps_below_the_resumed_step_is_refused(tmp_path):
  config = tiny_config(tmp_path, total_steps=4)
  train.train_and_export(config)
  config.total_steps = 2
  with pytest.raises(errors.ConfigError, match="config.total_steps=2: below step 4"):
    train.train_and_export(config, allow_config_change=True)


def test_a_workdirs_model_info_and_ablation_results_are_verified(tmp_path, monkeypatch):
  from hierre_jax import ablations
  from hierre_jax.evaluators import suite
  config = tiny_config(tmp_path, total_steps=1)
  train.train_and_export(config)
  evaluators = suite.build(["hyperlex"], suite.default_paths(SHARED_ROOT))
  evaluated = []
  evaluate = suite.evaluate
  monkeypatch.setattr(suite, "evaluate", lambda *a: evaluated.append(1) or evaluate(*a))
  first = ablations.evaluate_variant(str(tmp_path), evaluators, {})
  assert ablations.evaluate_variant(str(tmp_path), evaluators, {}) == first
  assert len(evaluated) == 1  # read back, verified
  stored = tmp_path / ablations.EVAL_FILE
  stored.write_text(stored.read_text().replace('"hyperlex/rho_all": ', '"hyperlex/rho_all": 1'))
  assert ablations.evaluate_variant(str(tmp_path), evaluators, {}) == first
  assert len(evaluated) == 2  # a changed result file is evaluated again, not used
  vocab = tmp_path / "model_info" / "vocab.json"
  vocab.write_text(vocab.read_text().replace('"a"', '"A"', 1))
  with pytest.raises(sealed.DamagedError, match=rf"{vocab}: changed or damaged"):
    loading.embedder(str(tmp_path))


def test_the_export_folder_is_export_and_an_earlier_workdirs_hf_export_is_kept(tmp_path):
  """workdir/export holds the run's export in the checkpoint's own format; a workdir an
  earlier version exported to (workdir/hf_export, a .pth or open_clip files too) resumes and
  exports there, its own folder accepted by the location checks."""
  from hierre_jax.trainer import model_dir as model_dir_lib
  config = tiny_config(tmp_path / "w")
  assert model_dir_lib.export_dir(config) == str(tmp_path / "w" / "export")
  os.makedirs(tmp_path / "w" / "hf_export")
  assert model_dir_lib.export_dir(config) == str(tmp_path / "w" / "hf_export")
  model_dir_lib.check_locations(config, [])
  config.export_dir = str(tmp_path / "w" / "elsewhere")  # any other folder of the workdir: no
  with pytest.raises(errors.UserError, match=r"the workdir's own files are there"):
    model_dir_lib.check_locations(config, [])
