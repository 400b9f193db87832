"""RE fine-tuning of OpenAI CLIP ViT-B/32 with the paper's settings (SPEC section 3)."""
import ml_collections

from hierre_jax.evaluators import suite


def get_config():
  config = ml_collections.ConfigDict()
  config.model = "openai/clip-vit-base-patch32"  # hub id or local HF directory
  config.random_init = None  # or a ConfigDict of sizes (see configs/demo.py)
  config.train_csv = "../shared/hierarcaps/hierarcaps_coco_train.csv.gz"
  config.skip_bad_rows = False
  config.workdir = "workdirs/clip_b32"
  config.export_dir = ""  # default: <workdir>/export
  # The export's format: the checkpoint's own (False), or a Hugging Face model directory
  # (True; an open_clip checkpoint then exports as a CLIPModel).
  config.export_hf = False

  config.batch_size = 8
  config.num_epochs = 1
  config.total_steps = -1  # > 0 overrides num_epochs
  config.seed = 0
  # Texts packed several to a row of 77 tokens, each attending only to itself
  # (hierre_jax.data.packing): almost no padding, the same losses and features; 2x the
  # padded step on CPU (benchmarks/RESULTS.md); eval.pack_texts does the same for the
  # embedding outside the step. The packed row count varies a little from batch to batch;
  # it is rounded up to a multiple of pack_rows_multiple so that few shapes are compiled
  # (on GPU/TPU each costs seconds to a minute; 4 at batch 8 on one device: mostly one
  # shape). False: pad instead, per length group (below).
  config.pack_texts = True
  config.pack_rows_multiple = 4
  # Padding, without packing (and for the contrastive ablation): to a
  # multiple of length_multiple, each group of tiers apart. 77: one static shape.
  config.length_multiple = 77
  config.length_groups = ((0, 1, 2, 3),)  # tier groups (0-based) padded separately

  config.lr = 1e-7
  config.schedule = "constant"  # or "warmup_cosine"
  config.warmup_steps = 0
  config.weight_decay = 0.01
  config.b1, config.b2, config.eps = 0.9, 0.999, 1e-8
  config.grad_clip_norm = 0.0  # 0: no clipping (the release clips nothing)

  config.lambda_p, config.lambda_e, config.lambda_m = 10.0, 1.0, 1.0
  # Ablations of the objective (SPEC section 6); these defaults are the method.
  # The chain trained on (0-based); (0, 2, 3): tier 2 dropped (its texts are still embedded
  # in the step, but enter no term).
  config.tiers = (0, 1, 2, 3)
  config.negatives = True  # False: the Q terms removed from L_e and L_m
  # "ec": entailment-cone margin terms in place of P and -Q; "contrastive": CLIP's contrastive loss
  # between each row's image (frozen image tower) and one positive text drawn per row.
  config.loss = "re"
  # loss="ec" only: psi's K and the margin m. K means twice as much on the sphere as on MERU's
  # hyperboloid: the sphere's psi = arcsin(K / |x - root|), MERU's arcsin(2K / (sqrt(c)|x|)).
  config.ec_k, config.ec_margin = 0.1, 0.1
  config.train_images_dir = ""  # loss="contrastive" only: the folder of train_csv's images
  # The root: "empty_string" (the text tower's own, moving with it), or fixed at "mean" (of
  # the pretrained features of every training text), "origin" or "pretrained" (the
  # pretrained empty string). A root other than "empty_string" is saved with the
  # checkpoints and as re_root.json beside the export; evaluations use it.
  config.root = "empty_string"
  config.trainable = "text_tower"  # or "root": towers frozen, config.root's root trained
  # Pull-back targets: the frozen tower's features of every distinct training text, computed
  # once before training (U * P * 4 bytes per device; 174 MB for HierarCaps at P=512) instead
  # of a frozen forward pass at every step. False: recompute them in every step.
  config.pullback_cache = True
  config.remat = False
  # Encoder layers as one scanned layer (stacked parameters): each shape compiles the layer
  # once instead of num_layers times. False: unrolled layers (the layout of checkpoints
  # written before 2026-11-24; a run resumes only in the layout it was started with).
  config.scan_layers = True
  # fp32 matmul precision on GPU/TPU: "highest" matches PyTorch fp32 to 1e-5; "default"
  # lets XLA use TF32 (GPU) or bf16 passes (TPU): faster, features off by ~1e-3.
  config.matmul_precision = "highest"
  # The towers' compute dtype in training and evaluation: "float32", or "bfloat16" (mixed
  # precision: parameters, gradients and optimizer state stay float32, the towers compute
  # in bfloat16; measured in docs/mixed_precision.md).
  config.compute_dtype = "float32"
  config.compilation_cache_dir = "~/.cache/hierre_jax/xla"  # reused across runs; "" disables

  # In-run evaluation (big_vision style), at the start, every `every_steps` steps (0: only
  # at the start and end) and at the end, logged to metrics.jsonl and TensorBoard as eval/...
  # HierarCaps P/R/tau_d from test_csv (empty: none); heldout_csv: train-format rows whose
  # images are the test images, for the mean positive/negative angles. `suite`: other
  # evaluations of hierre_jax.evaluators.suite, comma-separated (e.g. "hyperlex,coco"),
  # read from data_dir (a root laid out like ../shared; `paths` overrides single files).
  # How texts and images are embedded outside the train step (evaluations, the pull-back
  # cache, the mean root): pack_texts (several to a row, as the step; False: padded to a
  # multiple of length_multiple), image_workers threads decoding images ahead of the device
  # (0: one per CPU; 1: one at a time), keep_image_features (each image embedded once per
  # run by the frozen image tower; False: at every evaluation), store_image_features (and
  # kept on disk in workdir/image_features: resumptions and `hierre_jax.evaluate` of the
  # workdir reuse them).
  config.eval = ml_collections.ConfigDict(dict(
      test_csv="../shared/hierarcaps/hierarcaps_test.csv",
      images_dir="../shared/hierarcaps/test_images",
      heldout_csv="../shared/hierarcaps/hierarcaps_test_expanded.csv.gz",
      suite="", data_dir="../shared", paths=suite.in_run_path_keys(),
      allow_missing_images=False,  # retrieval on the images present (e.g. the COCO 1K subset)
      min_images=100,  # ... but never on fewer than this many
      at_start=True, at_end=True, every_steps=0, text_batch_size=256, image_batch_size=64,
      pack_texts=True, image_workers=0, keep_image_features=True, store_image_features=True))

  config.log_every = 50
  config.checkpoint_every = 500
  config.keep_checkpoints = 3
  return config
