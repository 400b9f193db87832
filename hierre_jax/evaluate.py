"""HierarCaps evaluation (SPEC section 4) and qualitative hierarchy retrieval.

  python -m hierre_jax.evaluate --model=PATH [--mode=hierarcaps|qualitative] [--data_dir=...]

PATH is a Hugging Face CLIP directory (or hub id), or a `hierre_jax.train` workdir
(its newest orbax checkpoint that verifies). Results go to --output_dir: by default
<workdir>/evaluations for a train workdir, else eval_results/<model> under the current
directory (never inside the model directory, which may be uploaded as it is).
"""
import json
import os

from absl import flags
import jax

from hierre_jax import cli
from hierre_jax import evaluation
from hierre_jax import input_pipeline
from hierre_jax import report


def output_dir(model_path):
  if FLAGS.output_dir:
    out = FLAGS.output_dir
  elif evaluation.is_train_workdir(model_path):
    out = os.path.join(model_path, "evaluations")
  else:
    name = os.path.normpath(model_path).strip("./").replace("/", "__") or "model"
    out = os.path.join("eval_results", name)
  os.makedirs(out, exist_ok=True)
  return out


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
flags.DEFINE_string("output_dir", "", "Where results go. Default: <workdir>/evaluations for "
                    "a train workdir, else eval_results/<model> in the current directory.")


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", FLAGS.matmul_precision)
  d = FLAGS.data_dir
  test_csv = FLAGS.test_csv or os.path.join(d, "hierarcaps_test.csv")
  images_dir = FLAGS.images_dir or os.path.join(d, "test_images")
  embedder = evaluation.Embedder.from_path(FLAGS.model, FLAGS.text_batch_size,
                                           FLAGS.image_batch_size, FLAGS.text_length_multiple)
  step = embedder.checkpoint_step
  suffix = "" if step is None else f"_step_{step}"
  out_dir = output_dir(FLAGS.model)
  if FLAGS.mode == "hierarcaps":
    out = os.path.join(out_dir, f"hierarcaps{suffix}.json")
    result = {"model": FLAGS.model, "checkpoint_step": step, "test_csv": test_csv,
              **evaluation.evaluate_hierarcaps(embedder, test_csv, images_dir)}
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")
  else:
    names = FLAGS.images or input_pipeline.read_hierarchies(test_csv).images[:FLAGS.num_images]
    chains = evaluation.qualitative(embedder, FLAGS.candidates_csv or os.path.join(
        d, "hierarcaps_test_expanded.csv.gz"), images_dir, names)
    out = os.path.join(out_dir, f"qualitative{suffix}")
    title = FLAGS.model + ("" if step is None else f" (checkpoint step {step})")
    report.write_all(chains, images_dir, out, title=title)
    print(f"wrote {out}.json/.csv/.html for {len(chains)} images")
    if FLAGS.reference_model:
      with open(os.path.join(d, "reference_qualitative_predictions.json")) as f:
        reference = json.load(f)["models"][FLAGS.reference_model]
      agreement = evaluation.chain_agreement(chains, reference)
      with open(out + "_vs_reference.json", "w") as f:
        json.dump({"model": FLAGS.model, "checkpoint_step": step,
                   "reference_model": FLAGS.reference_model, **agreement}, f, indent=1)
      print(json.dumps(agreement, indent=1))


if __name__ == "__main__":
  flags.mark_flags_as_required(["model"])
  cli.run(main)
