"""Every entry point's bad-argument cases, run as a user runs them: each ends with one line
`error: ...` naming the argument, file, key or entry at fault (exit status 1, no
traceback), before any compute, and leaves nothing behind where it would have written."""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from conftest import SHARED_NLTK_DATA
from family_matrix import TINY_TEXT, TINY_VISION
from runs import ROOT, SHARED_ROOT

TINY_CONFIG = "tests/tiny_train_config.py"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
  """(name, module, args, message expected in the error line, path that must not exist)."""
  from hierre_jax.models.clip import random_init
  tmp = tmp_path_factory.mktemp("bad_args")
  a_file = tmp / "a_file"
  a_file.write_text("")
  (tmp / "syntax.py").write_text("def get_config(:\n")
  (tmp / "root.json").write_text("[1, 2")
  (tmp / "not_a_config.py").write_text("def get_config():\n  return 3\n")
  good = random_init.write_random_clip(str(tmp / "model"), TINY_TEXT, TINY_VISION, 16)
  truncated = random_init.write_random_clip(str(tmp / "truncated"), TINY_TEXT, TINY_VISION, 16)
  weights = os.path.join(truncated, "model.safetensors")
  data = open(weights, "rb").read()
  open(weights, "wb").write(data[:len(data) // 2])
  nan = random_init.write_random_clip(str(tmp / "nan"), TINY_TEXT, TINY_VISION, 16)
  tensors = safetensors.numpy.load_file(os.path.join(nan, "model.safetensors"))
  tensors["text_projection.weight"] = np.full_like(tensors["text_projection.weight"], np.nan)
  safetensors.numpy.save_file(tensors, os.path.join(nan, "model.safetensors"))
  (tmp / "no_templates.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
  not_meru = tmp / "garbage.pth"
  not_meru.write_bytes(b"not a pickle")
  from hierre_jax.models.meru import random_init as meru_random_init
  meru_dir = meru_random_init.write_random_meru(str(tmp / "meru"), meru_random_init.TINY_TEXT,
                                                meru_random_init.TINY_VISION, 64)
  from hierre_jax import models
  from hierre_jax.models.open_clip import checkpoint as open_clip_checkpoint
  open_clip_family = models.FAMILIES["open_clip"]
  oc_truncated = open_clip_family.write_random(str(tmp / "oc_truncated"), TINY_TEXT,
                                               TINY_VISION, 16)
  oc_weights = os.path.join(oc_truncated, open_clip_checkpoint.SAFETENSORS)
  data = open(oc_weights, "rb").read()
  open(oc_weights, "wb").write(data[:len(data) // 3])
  oc_custom = open_clip_family.write_random(str(tmp / "oc_custom"), TINY_TEXT, TINY_VISION, 16)
  oc_config = os.path.join(oc_custom, "open_clip_config.json")
  found = json.load(open(oc_config))
  found["model_cfg"]["custom_text"] = True
  json.dump(found, open(oc_config, "w"))
  lone = tmp / "lone"
  lone.mkdir()
  (lone / "epoch_3.pt").write_bytes(b"x")
  siglip = models.FAMILIES["siglip"].write_random(
      str(tmp / "siglip"), dict(TINY_TEXT, max_position_embeddings=16, vocab_size=300),
      dict(TINY_VISION, hidden_size=32), 32)
  siglip_nan = shutil.copytree(siglip, tmp / "siglip_nan")
  tensors = safetensors.numpy.load_file(os.path.join(siglip_nan, "model.safetensors"))
  tensors["text_model.head.weight"] = np.full_like(tensors["text_model.head.weight"], np.nan)
  safetensors.numpy.save_file(tensors, os.path.join(siglip_nan, "model.safetensors"))
  naflex = tmp / "naflex"
  naflex.mkdir()
  (naflex / "config.json").write_text(json.dumps({"architectures": ["Siglip2Model"],
                                                  "model_type": "siglip2"}))
  from hierre_jax.dcsm import checkpoint as dcsm_checkpoint, maps, scorer
  scorer_dir = dcsm_checkpoint.save(str(tmp / "scorer"), scorer.init_params(5, 30),
                                    maps.functional_table(5), {"rows": 5, "columns": 30})
  damaged_scorer = dcsm_checkpoint.save(str(tmp / "damaged_scorer"), scorer.init_params(5, 30),
                                        maps.functional_table(5), {"rows": 5, "columns": 30})
  with open(os.path.join(damaged_scorer, dcsm_checkpoint.SCORER_FILE), "ab") as f:
    f.write(b"\0")
  release = lambda *args: ("hierre_jax.dcsm", ["export-release", *args])
  theirs = tmp / "theirs"  # a folder of someone else's files
  theirs.mkdir()
  (theirs / "results.json").write_text("{}")
  work = str(tmp / "w")
  train = lambda *args: ("hierre_jax.train", ["--config", TINY_CONFIG,
                                              f"--config.workdir={work}", *args])
  evaluate = lambda *args: ("hierre_jax.evaluate", [f"--model={good}",
                                                    f"--output_dir={tmp / 'eval'}", *args])
  alone = lambda model: ("hierre_jax.evaluate", [f"--model={model}",
                                                  f"--output_dir={tmp / 'eval'}"])
  hierarchy = lambda *args: ("hierre_jax.hierarchy", [f"--model={good}",
                                                      f"--data_dir={SHARED_ROOT}",
                                                      f"--output_dir={tmp / 'hier'}", *args])
  (tmp / "bad_regions.csv").write_text(f"image,caption,regions\n{a_file},a red star,"
                                       "red:0 0 1\n")
  (tmp / "no_regions.csv").write_text(f"image,caption\n{a_file},a red star\n")
  contrastive = lambda csv, *args: ("hierre_jax.contrastive", [
      "--config=configs/contrastive/shapes.py", f"--config.train_csv={tmp / csv}",
      "--config.eval.csv=", f"--config.workdir={tmp / 'cw'}", *args])
  out = [
      ("contrastive: a malformed region", *contrastive("bad_regions.csv"),
       f"{tmp / 'bad_regions.csv'}: row 2: region 'red:0 0 1': expected word:x0 y0 x1 y1",
       str(tmp / "cw")),
      ("contrastive: grounding without regions", *contrastive(
          "no_regions.csv", "--config.grounding_loss_weight=1"),
       f"config.grounding_loss_weight=1.0: {tmp / 'no_regions.csv'} has no regions column",
       str(tmp / "cw")),
      ("contrastive: NaN grounding weight", *contrastive(
          "bad_regions.csv", "--config.grounding_loss_weight=nan"),
       "config.grounding_loss_weight=nan: must be a finite number >= 0", str(tmp / "cw")),
      ("a model and a random model", "hierre_jax.train", [
          "--config=configs/demo.py", f"--config.model={good}", f"--config.workdir={work}"],
       f"config.model={good!r} and config.random_init are both set: a run starts from one",
       work),
      ("the random family from the command line", "hierre_jax.train", [
          "--config=configs/demo.py", "--config.random_init.family=nosuch",
          f"--config.workdir={work}"], "config.random_init.family='nosuch': not a family",
       work),
      ("config missing", "hierre_jax.train", ["--config=nosuch.py"],
       "--config=nosuch.py: no such config file", None),
      ("config syntax", "hierre_jax.train", [f"--config={tmp / 'syntax.py'}"],
       f"--config={tmp / 'syntax.py'}: cannot load the config file (", None),
      ("config not a ConfigDict", "hierre_jax.train", [f"--config={tmp / 'not_a_config.py'}"],
       "get_config() returned a int, not an ml_collections.ConfigDict", None),
      ("wrong type", *train("--config.batch_size=abc"), "--config.batch_size=abc", work),
      ("misspelt nested key", *train("--config.eval.evry_steps=5"),
       "--config.eval.evry_steps=5: no such config key 'evry_steps' (did you mean "
       '"every_steps" instead of "evry_steps"?)', work),
      ("unknown schedule", *train("--config.schedule=linear"),
       "config.schedule='linear': use one of ('constant', 'warmup_cosine')", work),
      ("nan lr", *train("--config.lr=nan"), "config.lr=nan: must be a finite number >= 0", work),
      ("negative warmup", *train("--config.warmup_steps=-1"),
       "config.warmup_steps=-1: must be an integer >= 0", work),
      ("batch larger than the data", *train("--config.batch_size=100000"),
       "config.batch_size=100000: more than the", work),
      ("workdir is a file", "hierre_jax.train", ["--config", TINY_CONFIG,
                                                 f"--config.workdir={a_file}"],
       f"{a_file}: cannot be used as the workdir: it is a file", None),
      ("workdir below a file", "hierre_jax.train", ["--config", TINY_CONFIG,
                                                    f"--config.workdir={a_file}/w"],
       f"{a_file}/w: cannot be used as the workdir: it is below the file {a_file}", None),
      ("model missing", "hierre_jax.evaluate", ["--model=./nosuch/model",
                                                f"--output_dir={tmp / 'e1'}"],
       "./nosuch/model: no such checkpoint directory", str(tmp / "e1")),
      ("not a MERU checkpoint", "hierre_jax.evaluate", [f"--model={not_meru}",
                                                       f"--output_dir={tmp / 'eval'}"],
       f"{not_meru}: not a torch checkpoint of tensors", None),
      ("sphere-only ablation of a hyperbolic model", "hierre_jax.train", [
          "--config=configs/clip_b32.py", f"--config.model={meru_dir}", f"--config.workdir={work}",
          "--config.train_csv=hierre_jax/assets/hierarcaps_sample.csv", "--config.eval.test_csv=",
          "--config.root=mean"],
       f"config.root='mean': defined on the sphere; {meru_dir} lives in lorentz space", work),
      ("hyperbolic cones seen from another root", "hierre_jax.train", [
          "--config=configs/clip_b32.py", f"--config.model={meru_dir}", f"--config.workdir={work}",
          "--config.train_csv=hierre_jax/assets/hierarcaps_sample.csv", "--config.eval.test_csv=",
          "--config.loss=ec"],
       "config.loss='ec' with config.root='empty_string': in lorentz space the entailment "
       "cone's aperture is measured from the origin", work),
      ("truncated open_clip weights", *alone(oc_truncated),
       f"{oc_weights}: cannot read this safetensors file (truncated or corrupt?", str(tmp / "eval")),
      ("open_clip custom text tower", *alone(oc_custom),
       f"{oc_config}: custom_text=True: not the standard CLIP class", str(tmp / "eval")),
      ("open_clip epoch file without its config", *alone(lone / "epoch_3.pt"),
       f"{lone / 'epoch_3.pt'}: a checkpoint file of no family hierre_jax reads",
       str(tmp / "eval")),
      ("non-finite SigLIP weights", *alone(siglip_nan),
       "text_model']['head']['kernel']", str(tmp / "eval")),
      ("SigLIP 2 NaFlex", *alone(naflex),
       "architecture ['Siglip2Model'] is not supported", str(tmp / "eval")),
      ("one of several models missing", *evaluate("--model=./nosuch/model"),
       "./nosuch/model: no such checkpoint directory", str(tmp / "eval")),
      ("a random model of a missing one", *evaluate("--model=random:./nosuch/model"),
       "./nosuch/model: no such checkpoint directory", str(tmp / "eval")),
      ("a traversal root that is no vector", *evaluate(f"--traversal_root={tmp / 'root.json'}"),
       f"{tmp / 'root.json'}: not a root vector (JSONDecodeError", str(tmp / "eval")),
      ("Hugging Face export of a MERU", "hierre_jax.train", [
          "--config", f"{TINY_CONFIG}:meru", f"--config.workdir={work}", "--config.export_hf=True"],
       "config.export_hf=True: a meru model has no Hugging Face format", work),
      ("release checkpoint of a SigLIP", *release(f"--scorer={scorer_dir}", f"--model={siglip}",
                                                  f"--out={tmp / 's.pt'}"),
       f"{siglip}: a siglip model; the release's checkpoint holds a Hugging Face CLIP",
       str(tmp / "s.pt")),
      ("truncated weights", "hierre_jax.evaluate", [f"--model={truncated}",
                                                    f"--output_dir={tmp / 'e2'}"],
       f"{weights}: cannot read this safetensors file (truncated or corrupt?", None),
      ("non-finite weights", "hierre_jax.evaluate", [f"--model={nan}",
                                                     f"--output_dir={tmp / 'e3'}"],
       "1 of ", None),
      ("output folder is a file", "hierre_jax.evaluate", [f"--model={good}",
                                                          f"--output_dir={a_file}"],
       f"{a_file}: cannot be used as the output folder: it is a file", None),
      ("unknown evaluation", *evaluate("--evals=hierarcaps,coc"),
       "--evals: use names of hierarcaps, hyperlex", str(tmp / "eval")),
      ("unknown BREEDS set", *hierarchy("--classes=breeds:living71"),
       "--classes=breeds:living71: ", str(tmp / "hier")),
      ("class file without templates", *hierarchy(f"--classes={tmp / 'no_templates.json'}"),
       f"{tmp / 'no_templates.json'}: no 'templates' list", str(tmp / "hier")),
      ("hierarchy image features inside the data", *hierarchy(
          f"--image_features_dir={SHARED_ROOT}/features"),
       f"--image_features_dir={SHARED_ROOT}/features lies inside the input --data_dir="
       f"{SHARED_ROOT}", f"{SHARED_ROOT}/features"),
      ("ontology the class set lacks", *hierarchy("--ontology=breeds"),
       "--ontology=breeds: the class set cifar100 has no 'breeds' grouping; use one of wordnet, "
       "cifar100_superclasses", str(tmp / "hier")),
      ("hierarchy output is a file", "hierre_jax.hierarchy",
       [f"--model={good}", f"--output_dir={a_file}", f"--data_dir={SHARED_ROOT}"],
       f"{a_file}: cannot be used as the output folder: it is a file", None),
      ("unknown grid", "hierre_jax.ablations", ["--grid=table9", f"--workdir={tmp / 'g'}"],
       "--grid: unknown ['table9']", str(tmp / "g")),
      # No output on an input, nor in another run's folder.
      ("evaluation into the model", "hierre_jax.evaluate", [f"--model={good}",
                                                            f"--output_dir={good}/results"],
       f"--output_dir={good}/results lies inside the input --model={good}",
       os.path.join(good, "results")),
      ("evaluation into another run's folder", "hierre_jax.evaluate",
       [f"--model={good}", f"--output_dir={theirs}"],
       f"--output_dir={theirs} holds files not written by this command", None),
      ("hierarchy into another run's folder", *hierarchy(f"--output_dir={theirs}"),
       f"--output_dir={theirs} holds files not written by this command", None),
      ("hierarchy into the data", *hierarchy(f"--output_dir={SHARED_ROOT}/hierarcaps/out"),
       f"lies inside the input --data_dir={SHARED_ROOT}", None),
      ("export over the workdir", *train(f"--config.export_dir={work}"),
       f"config.export_dir={work}: the workdir's own files are there", work),
      ("export into another run's folder", *train(f"--config.export_dir={theirs}"),
       f"config.export_dir={theirs} holds files not written by this command", work),
      ("make-data into a full folder", "hierre_jax.dcsm", ["make-data", f"--out={theirs}"],
       f"{theirs}: not empty; make-data writes a whole new set (--overwrite", None),
      ("make-data --overwrite of a user's folder", "hierre_jax.dcsm", [
          "make-data", f"--out={theirs}", "--overwrite"],
       f"--out={theirs} holds files make-data did not write (no procedural.json)", None),
      ("a scorer chosen by an unknown rule", "hierre_jax.dcsm", [
          "train", "--config=configs/dcsm/base.py", "--config.eval.select=best",
          f"--config.workdir={tmp / 'select'}"],
       "config.eval.select='best': use one of last, validation", str(tmp / "select")),
      ("a scorer chosen on validation it never scores", "hierre_jax.dcsm", [
          "train", "--config=configs/dcsm/base.py", "--config.eval.select=validation",
          f"--config.workdir={tmp / 'select'}"],
       "config.eval.select='validation' needs config.eval.validation_pairs > 0",
       str(tmp / "select")),
      ("import with heads of no number", "hierre_jax.dcsm", [
          "import", f"--checkpoint={a_file}", f"--out={tmp / 'imp'}", "--num_heads=x"],
       "--num_heads: one or two positive integers", str(tmp / "imp")),
      ("release checkpoint below a file", *release(f"--scorer={scorer_dir}", f"--model={good}",
                                                  f"--out={a_file}/x.pt"),
       f"{a_file}: cannot be used as the folder of --out={a_file}/x.pt: it is a file", None),
      ("the same model twice", *evaluate(f"--model={good}/"),
       f"--model={good}/ names the same model as --model={good}: give each model once",
       str(tmp / "eval")),
      ("image features inside the model", *evaluate(f"--image_features_dir={good}/features"),
       f"--image_features_dir={good}/features lies inside the input --model={good}",
       f"{good}/features"),
      ("qualitative with several models", *evaluate(f"--model={nan}", "--mode=qualitative"),
       "--mode=qualitative takes one --model (2 given)", str(tmp / "eval")),
      ("unknown reference chains", "hierre_jax.evaluate", [
          f"--model={good}", "--mode=qualitative", f"--data_dir={SHARED_ROOT}",
          "--reference_model=nosuch", f"--output_dir={tmp / 'eval'}"],
       "--reference_model=nosuch: not in ", str(tmp / "eval")),
      ("a non-finite model among several", *evaluate(f"--model={nan}", "--evals=hyperlex",
                                                     f"--data_dir={SHARED_ROOT}"),
       f"{nan}: 1 of ", str(tmp / "eval")),
      ("release checkpoint over a file", *release(f"--scorer={scorer_dir}", f"--model={good}",
                                                  f"--out={a_file}"),
       f"--out={a_file}: exists; write the checkpoint to a new file", None),
      ("release checkpoint into the model", *release(
          f"--scorer={scorer_dir}", f"--model={good}", f"--out={good}/dcsm.pt"),
       f"--out={good}/dcsm.pt lies inside the input --model={good}", f"{good}/dcsm.pt"),
      ("release checkpoint of a damaged scorer", *release(
          f"--scorer={damaged_scorer}", f"--model={good}", f"--out={tmp / 'd.pt'}"),
       f"{damaged_scorer}/scorer.safetensors: changed or damaged since it was written",
       str(tmp / "d.pt")),
      ("release checkpoint of a MERU", *release(f"--scorer={scorer_dir}", f"--model={meru_dir}",
                                                f"--out={tmp / 'm.pt'}"),
       f"{meru_dir}: a meru model; the release's checkpoint holds a Hugging Face CLIP",
       str(tmp / "m.pt")),
      ("release checkpoint of another backbone", *release(
          f"--scorer={scorer_dir}", f"--model={good}", f"--out={tmp / 'r.pt'}"),
       f"{scorer_dir}: the scorer reads maps of 5 rows; {good} gives", str(tmp / "r.pt")),
  ]
  if os.path.exists(os.path.join(SHARED_ROOT, "coco", "captions_val2017.json")):
    two = tmp / "two_images"
    two.mkdir()
    images = os.path.join(SHARED_ROOT, "hierarcaps", "test_images")
    for name in sorted(os.listdir(images))[:2]:
      os.symlink(os.path.join(images, name), two / name)
    out.append(("near-empty image set", *evaluate(
        f"--data_dir={SHARED_ROOT}", "--evals=coco", f"--coco_images={two}",
        "--allow_missing_images"), "only 2 of the 5000 images of the annotations are present",
                str(tmp / "eval")))
    out.append(("no minimum of images", *evaluate(
        f"--data_dir={SHARED_ROOT}", "--evals=coco", f"--coco_images={two}",
        "--allow_missing_images", "--min_images=0"),
                "min_images=0: a retrieval needs at least 1 image", str(tmp / "eval")))
    out.append(("COCO images not under the data root", *evaluate(
        f"--data_dir={SHARED_ROOT}", "--evals=coco"),
                f"{SHARED_ROOT}/coco/val2017: no such image folder for coco; pass --coco_images",
                str(tmp / "eval")))
  return out


def run_case(module, args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", NLTK_DATA=os.path.abspath(SHARED_NLTK_DATA),
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_every_entry_point_names_what_is_wrong_in_one_line(cases):
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = list(pool.map(lambda case: run_case(case[1], case[2]), cases))
  failures = []
  for (name, _, _, message, absent), out in zip(cases, results):
    lines = out.stderr.strip().splitlines()
    ok = (out.returncode == 1 and lines and lines[-1].startswith("error: ")
          and message in lines[-1] and "Traceback" not in out.stderr
          and "\\n" not in lines[-1] and "\\'" not in lines[-1]
          and sum(line.startswith("error: ") for line in lines) == 1
          and (absent is None or not os.path.exists(absent)))
    if not ok:
      failures.append(f"{name}: exit {out.returncode}, wanted {message!r}, got "
                      f"{lines[-3:] if lines else out.stdout[-500:]}")
  assert not failures, "\n".join(failures)
