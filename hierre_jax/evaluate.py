"""HierarCaps evaluation (SPEC section 4) and qualitative hierarchy retrieval.

  python -m hierre_jax.evaluate --model=PATH [--mode=hierarcaps|qualitative] [--data_dir=...]

PATH is a Hugging Face CLIP directory (or hub id), or a `hierre_jax.train` workdir
(its latest orbax checkpoint). Results are written as JSON next to the checkpoint.
"""
import json
import os
import time

from absl import app
from absl import flags
import numpy as np
import orbax.checkpoint as ocp

from hierre_jax import checkpoints
from hierre_jax import embedding
from hierre_jax import geometry
from hierre_jax import hierarchical_retrieval as hr
from hierre_jax import image_preprocessing
from hierre_jax import input_pipeline
from hierre_jax import models
from hierre_jax import report
from hierre_jax import tokenizer as tokenizer_lib


def load_model(path):
  """-> (ClipConfig, params, dir with config and tokenizer files). Train workdirs use the
  latest orbax checkpoint and workdir/model_info."""
  info = os.path.join(path, "model_info")
  if os.path.isdir(os.path.join(path, "checkpoints")) and os.path.isdir(info):
    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(path, "checkpoints")))
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{path}/checkpoints: no finished checkpoint")
    config = models.ClipConfig.from_hf(checkpoints.load_hf_config(info))
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return config, state["state"]["params"], info
  return checkpoints.load_clip(path)


def distinct(texts):
  """Texts in order of first appearance, without repeats (string identity)."""
  return list(dict.fromkeys(texts))


class Embedder:
  """Embeds texts (with the root) and test images of one model."""

  def __init__(self, model_path, text_batch_size=256, image_batch_size=64):
    self.config, self.params, self.model_dir = load_model(model_path)
    self.tokenizer = tokenizer_lib.load_tokenizer(self.model_dir)
    self.text_batch_size, self.image_batch_size = text_batch_size, image_batch_size
    self.preprocessing = image_preprocessing.Preprocessing.from_model_dir(
        self.model_dir, self.config.vision.image_size)

  def texts(self, texts):
    """-> ([N, P] unit text features, [P] root = feature of the empty string)."""
    feats = embedding.embed_texts(self.config, self.params, self.tokenizer, list(texts) + [""],
                                  self.text_batch_size)
    return feats[:-1], feats[-1]

  def images(self, paths):
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[:3]}")
    batches = image_preprocessing.load_batches(paths, self.preprocessing, self.image_batch_size)
    return embedding.embed_images(self.config, self.params, batches, self.image_batch_size,
                                  num_batches=-(-len(paths) // self.image_batch_size))


def evaluate_hierarcaps(embedder, test_csv, images_dir, num_levels=hr.NUM_LEVELS):
  """P, R, tau_d on a test file, with timings in seconds."""
  data = input_pipeline.read_hierarchies(test_csv)
  candidates = distinct(t for row in data.positives for t in row)
  index = {t: i for i, t in enumerate(candidates)}
  row_tier_index = np.array([[index[t] for t in row] for row in data.positives])
  images, rows_table = hr.group_rows_by_image(data.images)

  t0 = time.perf_counter()
  text_emb, root = embedder.texts(candidates)
  t1 = time.perf_counter()
  image_emb = embedder.images([os.path.join(images_dir, name) for name in images])
  t2 = time.perf_counter()
  radii = np.asarray(geometry.radius(text_emb, root))
  preds = hr.retrieve(text_emb, radii, image_emb, num_levels)
  metrics, _, _ = hr.hierarcaps_metrics(preds, rows_table, row_tier_index, radii)
  t3 = time.perf_counter()
  metrics["seconds"] = {"embed_texts": t1 - t0, "embed_images": t2 - t1, "retrieval": t3 - t2}
  return metrics


def qualitative(embedder, candidates_csv, images_dir, image_names, num_levels=hr.NUM_LEVELS):
  """{image name: predicted chain of texts, general to specific} over all distinct positive
  texts of `candidates_csv`."""
  data = input_pipeline.read_hierarchies(candidates_csv)
  candidates = distinct(t for row in data.positives for t in row)
  text_emb, root = embedder.texts(candidates)
  image_emb = embedder.images([os.path.join(images_dir, name) for name in image_names])
  radii = np.asarray(geometry.radius(text_emb, root))
  chains = hr.prediction_chains(hr.retrieve(text_emb, radii, image_emb, num_levels))
  return {name: [candidates[i] for i in chain] for name, chain in zip(image_names, chains)}


def default_output(model_path, name):
  base = model_path if os.path.isdir(model_path) else os.path.join(
      "workdirs", model_path.replace("/", "__"))
  os.makedirs(base, exist_ok=True)
  return os.path.join(base, name)


FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "HF CLIP directory or hub id, or a hierre_jax.train workdir.")
flags.DEFINE_enum("mode", "hierarcaps", ["hierarcaps", "qualitative"], "What to run.")
flags.DEFINE_string("data_dir", "../shared/hierarcaps", "HierarCaps directory.")
flags.DEFINE_string("test_csv", "", "Default: <data_dir>/hierarcaps_test.csv.")
flags.DEFINE_string("images_dir", "", "Default: <data_dir>/test_images.")
flags.DEFINE_string("candidates_csv", "", "Qualitative candidates. Default: "
                    "<data_dir>/hierarcaps_test_expanded.csv.gz.")
flags.DEFINE_list("images", [], "Qualitative: image file names (default: first --num_images "
                  "images of the test set).")
flags.DEFINE_integer("num_images", 20, "Qualitative: how many test images when --images is empty.")
flags.DEFINE_integer("text_batch_size", 256, "Texts per batch.")
flags.DEFINE_integer("image_batch_size", 64, "Images per batch.")
flags.DEFINE_string("out", "", "Output path (JSON; qualitative also writes .csv and .html). "
                    "Default: next to the checkpoint.")


def main(argv):
  del argv
  d = FLAGS.data_dir
  test_csv = FLAGS.test_csv or os.path.join(d, "hierarcaps_test.csv")
  images_dir = FLAGS.images_dir or os.path.join(d, "test_images")
  embedder = Embedder(FLAGS.model, FLAGS.text_batch_size, FLAGS.image_batch_size)
  if FLAGS.mode == "hierarcaps":
    out = FLAGS.out or default_output(FLAGS.model, "hierarcaps_eval.json")
    result = {"model": FLAGS.model, "test_csv": test_csv,
              **evaluate_hierarcaps(embedder, test_csv, images_dir)}
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
  else:
    names = FLAGS.images or input_pipeline.read_hierarchies(test_csv).images[:FLAGS.num_images]
    chains = qualitative(embedder, FLAGS.candidates_csv or os.path.join(
        d, "hierarcaps_test_expanded.csv.gz"), images_dir, names)
    out = FLAGS.out or default_output(FLAGS.model, "qualitative.json")
    report.write_all(chains, images_dir, os.path.splitext(out)[0], title=FLAGS.model)
    print(f"wrote {os.path.splitext(out)[0]}.json/.csv/.html for {len(chains)} images")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model"])
  app.run(main)
