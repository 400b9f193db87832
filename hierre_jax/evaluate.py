"""HierarCaps evaluation (SPEC section 4) and qualitative hierarchy retrieval.

  python -m hierre_jax.evaluate --model=PATH [--mode=hierarcaps|qualitative] [--data_dir=...]

PATH is a Hugging Face CLIP directory (or hub id), or a `hierre_jax.train` workdir
(its latest orbax checkpoint). Results are written as JSON next to the checkpoint.
"""
import json
import os

from absl import app
from absl import flags
import jax

from hierre_jax import evaluation
from hierre_jax import input_pipeline
from hierre_jax import report


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
flags.DEFINE_integer("text_length_multiple", 8, "Pad text batches to a multiple of this; 77 "
                     "gives one static shape (one compilation), best on GPU/TPU.")
flags.DEFINE_integer("image_batch_size", 64, "Images per batch.")
flags.DEFINE_enum("matmul_precision", "highest", ["highest", "high", "default"],
                  "fp32 matmul precision on GPU/TPU: highest matches PyTorch fp32; default "
                  "allows TF32 / bf16 passes.")
flags.DEFINE_string("reference_model", "", "Qualitative: compare the chains with this model's "
                    "in <data_dir>/reference_qualitative_predictions.json (e.g. "
                    "clip_vit_b32_re_finetuned), a regression check for real weights.")
flags.DEFINE_string("out", "", "Output path (JSON; qualitative also writes .csv and .html). "
                    "Default: next to the checkpoint.")


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", FLAGS.matmul_precision)
  d = FLAGS.data_dir
  test_csv = FLAGS.test_csv or os.path.join(d, "hierarcaps_test.csv")
  images_dir = FLAGS.images_dir or os.path.join(d, "test_images")
  embedder = evaluation.Embedder.from_path(FLAGS.model, FLAGS.text_batch_size,
                                           FLAGS.image_batch_size, FLAGS.text_length_multiple)
  if FLAGS.mode == "hierarcaps":
    out = FLAGS.out or default_output(FLAGS.model, "hierarcaps_eval.json")
    result = {"model": FLAGS.model, "test_csv": test_csv,
              **evaluation.evaluate_hierarcaps(embedder, test_csv, images_dir)}
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
  else:
    names = FLAGS.images or input_pipeline.read_hierarchies(test_csv).images[:FLAGS.num_images]
    chains = evaluation.qualitative(embedder, FLAGS.candidates_csv or os.path.join(
        d, "hierarcaps_test_expanded.csv.gz"), images_dir, names)
    out = FLAGS.out or default_output(FLAGS.model, "qualitative.json")
    report.write_all(chains, images_dir, os.path.splitext(out)[0], title=FLAGS.model)
    print(f"wrote {os.path.splitext(out)[0]}.json/.csv/.html for {len(chains)} images")
    if FLAGS.reference_model:
      with open(os.path.join(d, "reference_qualitative_predictions.json")) as f:
        reference = json.load(f)["models"][FLAGS.reference_model]
      agreement = evaluation.chain_agreement(chains, reference)
      with open(os.path.splitext(out)[0] + "_vs_reference.json", "w") as f:
        json.dump({"reference_model": FLAGS.reference_model, **agreement}, f, indent=1)
      print(json.dumps(agreement, indent=1))


if __name__ == "__main__":
  flags.mark_flags_as_required(["model"])
  app.run(main)
