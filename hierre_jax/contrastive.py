"""The contrastive objective (CLIP's) on both towers (and the logit scale), from a checkpoint or
from scratch, on a CSV of (image, caption) pairs: small-scale experiments such as the
frozen backbone of the offline DCSM study (docs/dcsm.md).
config.token_loss_weight > 0 adds FILIP's token-wise term (word tokens against patches), so
that a backbone's tokens align: the study's positive control. config.grounding_loss_weight > 0
adds a supervised one instead: each word of a row's `regions` (`grounding`) puts its
similarity on the patches of its box.

config.loss: "contrastive" (CLIP's, cosine logits: a model on the sphere), "sigmoid"
(SigLIP's: each pair a binary decision on exp(logit_scale) cosine + logit_bias, for a
checkpoint that stores a logit bias: SigLIP) or "meru" (MERU's,
a hyperbolic MERU: logits -exp(logit_scale) d(v_i, t_j) plus 0.2 x the entailment-cone
violation, FAMILIES_SPEC 1.3; the curvature and alphas are trained too, kept in MERU's
bounds after every update, where MERU clamps them in its forward pass).

  python -m hierre_jax.contrastive --config configs/contrastive/shapes.py [--config.key=value]

The CSV has the columns image (a path, relative to the CSV's folder) and caption, and
optionally regions (`grounding`); an image may appear in several rows. Every image is decoded and preprocessed once, before the first
step (the data must fit in host memory). Rows of a batch whose captions are the same text
are positives of each other (the target spreads over them), not negatives. The same
verified checkpoints, resume, config-drift refusal, metrics and progress as RE training
(`trainer/loop.py`); the result is exported as a Hugging Face model directory.
"""
import csv
import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from hierre_jax.common import cli
from hierre_jax.common import config_values
from hierre_jax import embedding
from hierre_jax.common import errors
from hierre_jax import grounding
from hierre_jax import models
from hierre_jax.common import sealed
from hierre_jax.common import sharding
from hierre_jax.data import images as image_data
from hierre_jax.geometry import lorentz
from hierre_jax.data import text as text_ids
from hierre_jax.models import family as family_lib
from hierre_jax.trainer import loop
from hierre_jax.trainer import model_dir as model_dir_lib
from hierre_jax.trainer import run

MAX_LOG_SCALE = float(np.log(100.0))  # CLIP clips its logit scale at 100
# config.loss -> the geometry it is defined in.
LOSSES = {"contrastive": "sphere", "sigmoid": "sphere", "meru": "lorentz"}
ENTAILMENT_WEIGHT = 0.2  # MERU's
MERU_FROZEN = ("visual.pos_embed",)  # MERU's image tower: a fixed 2-D sin-cos position table
TOKEN_TERMS = ("token_loss_weight", "grounding_loss_weight")  # config keys of the token terms
# MERU's bounds on its stored logs (FAMILIES_SPEC 1.3): curvature in [0.1, 10], alphas <= 1.
LOG_BOUNDS = {"curv": (float(np.log(0.1)), float(np.log(10.0))),
              "visual_alpha": (None, 0.0), "textual_alpha": (None, 0.0),
              "logit_scale": (None, MAX_LOG_SCALE)}


def read_pairs(path):
  """CSV (image, caption[, regions]) -> (image paths, captions, [(word, box)] per row or None
  without a regions column); DataError naming a bad row."""
  errors.require_file(path, "pairs CSV")
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if not {"image", "caption"} <= set(reader.fieldnames or []):
      raise errors.DataError(f"{path}: needs the columns image and caption "
                             f"(has {reader.fieldnames})")
    rows = list(reader)
  folder = os.path.dirname(os.path.abspath(path))
  images, captions = [], []
  regions = [] if "regions" in reader.fieldnames else None
  for i, row in enumerate(rows, start=2):  # line numbers as an editor shows them
    if not row["image"] or not row["caption"]:
      raise errors.DataError(f"{path}: row {i}: empty image or caption")
    image = os.path.join(folder, row["image"])
    if not os.path.isfile(image):
      raise errors.DataError(f"{path}: row {i}: no image file {image}")
    images.append(image)
    captions.append(row["caption"])
    if regions is not None:
      regions.append(grounding.parse_regions(row["regions"] or "", row["caption"],
                                             f"{path}: row {i}"))
  if not images:
    raise errors.DataError(f"{path}: no rows")
  return images, captions, regions


class PairData:
  """Preprocessed pixels of every distinct image, token ids of every distinct caption, the
  rows as (image index, caption index), and with `pool_index` (for the grounding loss) each
  row's regions as (token index of the word, box, whether a region) padded to the most
  regions of a row."""

  def __init__(self, path, tokenizer, preprocessing, max_length, pool_index=None,
               workers=None):
    images, captions, regions = read_pairs(path)
    self.image_paths = list(dict.fromkeys(images))
    self.captions = list(dict.fromkeys(captions))
    image_index = {p: i for i, p in enumerate(self.image_paths)}
    caption_index = {c: i for i, c in enumerate(self.captions)}
    self.rows = np.asarray([[image_index[p], caption_index[c]] for p, c in zip(images, captions)],
                           np.int32)
    ids = text_ids.tokenize(tokenizer, self.captions, max_length)
    self.ids = text_ids.pad(ids, text_ids.bucket_length(max(map(len, ids)), 8, max_length),
                            tokenizer.pad_token_id)
    self.regions = None if regions is None or pool_index is None else self.region_arrays(
        path, captions, regions, tokenizer, max_length, pool_index)
    self.pixels = np.concatenate(list(tqdm.tqdm(
        image_data.load_batches(self.image_paths, preprocessing, 64, workers),
        total=-(-len(self.image_paths) // 64), desc=f"images of {os.path.basename(path)}",
        leave=False)))

  @staticmethod
  def region_arrays(path, captions, regions, tokenizer, max_length, pool_index):
    """-> {positions [N, K] int32, boxes [N, K, 4] float32, valid [N, K] bool}."""
    k = max(1, max(map(len, regions)))
    out = {"positions": np.zeros((len(regions), k), np.int32),
           "boxes": np.tile(np.float32([0, 0, 1, 1]), (len(regions), k, 1)),
           "valid": np.zeros((len(regions), k), bool)}
    position = {}
    for i, (caption, row) in enumerate(zip(captions, regions)):
      for j, (word, box) in enumerate(row):
        if (caption, word) not in position:
          position[caption, word] = grounding.word_position(
              tokenizer, pool_index, caption, word, max_length, f"{path}: row {i + 2}")
        out["positions"][i, j], out["boxes"][i, j] = position[caption, word], box
        out["valid"][i, j] = True
    return out

  def batch(self, step, batch_size, seed):
    """The rows of `step`: a permutation per epoch from (seed, epoch), partial batches left
    out -> {pixels, ids, caption: [B] caption index, and the rows' region arrays}."""
    per_epoch = len(self.rows) // batch_size
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
    picked = order[k * batch_size:(k + 1) * batch_size]
    rows = self.rows[picked]
    regions = {} if self.regions is None else {k: v[picked] for k, v in self.regions.items()}
    return {"pixels": self.pixels[rows[:, 0]], "ids": self.ids[rows[:, 1]],
            "caption": rows[:, 1], **regions}


def symmetric_cross_entropy(logits, caption, text_logits=None):
  """[B, B] image-to-text logits, [B] caption index -> mean of both directions'
  cross-entropies, rows of the same caption all positives (the target spread over them).
  The text-to-image direction reads `text_logits` [B images, B texts] where it differs
  (FILIP's two late interactions), else `logits`."""
  same = (caption[:, None] == caption[None, :]).astype(logits.dtype)
  target = same / same.sum(axis=1, keepdims=True)  # symmetric: the same for both directions
  text_logits = logits if text_logits is None else text_logits
  return (optax.softmax_cross_entropy(logits, target).mean()
          + optax.softmax_cross_entropy(text_logits.T, target).mean()) / 2


def contrastive_loss(image, text, log_scale, caption):
  """Unit features [B, P] of B rows, the log logit scale, [B] caption index -> symmetric
  cross-entropy of exp(log_scale) * <v_i, t_j> (CLIP's)."""
  return symmetric_cross_entropy(jnp.exp(log_scale) * image @ text.T, caption)


def word_mask(ids, ends):
  """[B, T] ids, [B] index of each text's end token -> [B, T] bool: its word tokens (after
  the start token, before the end)."""
  t = jnp.arange(ids.shape[1])[None]
  return (t > 0) & (t < ends[:, None])


def token_contrastive_loss(patches, words, mask, log_scale, caption):
  """FILIP's token-wise late interaction (Yao et al., 2021) as a symmetric contrastive loss:
  unit patch features [B, R, P], word-token features [B, T, P] with their [B, T] mask.
  Image i against text j: image-to-text, the mean over i's patches of the best word of j;
  text-to-image, the mean over j's words of the best patch of i; each scaled by
  exp(log_scale) into `symmetric_cross_entropy`."""
  sim = jnp.einsum("irp,jtp->ijrt", patches, words)  # [B images, B texts, R, T]
  best_word = jnp.where(mask[None, :, None, :], sim, -jnp.inf).max(axis=3)
  best_patch = sim.max(axis=2)  # [B, B, T]
  words_per_text = jnp.maximum(mask.sum(axis=1), 1)[None]
  i2t = best_word.mean(axis=2)
  t2i = (best_patch * mask[None]).sum(axis=2) / words_per_text
  scale = jnp.exp(log_scale)
  return symmetric_cross_entropy(scale * i2t, caption, scale * t2i)


def sigmoid_loss(image, text, log_scale, bias, caption):
  """Unit features [B, P] of B rows, the log logit scale, the logit bias, [B] caption index
  -> (SigLIP's loss, [B, B] logits): logits exp(log_scale) <v_i, t_j> + bias, label +1 where
  row j's caption is row i's (the same text counts as a positive) else -1; minus the sum
  over j of log sigmoid(label * logit), averaged over the B images (Zhai et al., 2023)."""
  logits = jnp.exp(log_scale) * image @ text.T + bias
  labels = 2.0 * (caption[:, None] == caption[None, :]) - 1.0
  return -jax.nn.log_sigmoid(labels * logits).sum(axis=1).mean(), logits


def meru_loss(image, text, log_scale, caption, c):
  """Hyperboloid points [B, P] (space parts) of B rows, the log logit scale, [B] caption
  index, curvature c -> (MERU's loss, [B, B] logits): the symmetric cross-entropy of
  -exp(log_scale) d(v_i, t_j), plus ENTAILMENT_WEIGHT x the mean of
  relu(oxy_angle(t_i, v_i) - half_aperture(t_i)) (each image inside its caption's cone)."""
  logits = -jnp.exp(log_scale) * lorentz.distance(image[:, None], text[None], c)
  violation = jax.nn.relu(lorentz.oxy_angle(text, image, c) - lorentz.half_aperture(text, c))
  return (symmetric_cross_entropy(logits, caption)
          + ENTAILMENT_WEIGHT * jnp.mean(violation)), logits


def clamp_to_bounds(params):
  """MERU's stored logs moved into `LOG_BOUNDS` (the groups a checkpoint has)."""
  return {**params, **{k: jnp.clip(params[k], *LOG_BOUNDS[k]) for k in LOG_BOUNDS
                       if k in params}}


def make_loss_fn(model, loss="contrastive", token_weight=0.0, grounding_weight=0.0):
  """-> fn(params, batch) -> (loss value, metrics) of `loss`; `token_weight` > 0 adds that
  times FILIP's token-wise loss (`token_contrastive_loss`: word tokens against patches),
  `grounding_weight` > 0 that times `grounding.grounding_loss` of the batch's regions; with
  either, the pooled features are read off the same token pass (the class token, each
  text's end token)."""
  encoders = model.encoders()

  def features(params, batch):
    """-> (pooled image, pooled text, {name: unweighted token-level term})."""
    if not (token_weight or grounding_weight):
      return encoders.image(params, batch["pixels"]), encoders.text(params, batch["ids"]), {}
    ids, lift = batch["ids"], model.geometry.lift
    ends = model.pool_index(ids)
    tokens = encoders.text_tokens(params, ids, jnp.arange(ids.shape[1])[None] <= ends[:, None])
    image_tokens = encoders.image_tokens(params, batch["pixels"])
    patches, words = lift(image_tokens[:, 1:]), lift(tokens)
    log_scale, terms = model.family.log_logit_scale(params), {}
    if token_weight:
      terms["tokens"] = token_contrastive_loss(patches, words, word_mask(ids, ends), log_scale,
                                               batch["caption"])
    if grounding_weight:
      terms["grounding"] = grounding.grounding_loss(patches, words, batch["positions"],
                                                    batch["boxes"], batch["valid"], log_scale)
    return image_tokens[:, 0], tokens[jnp.arange(len(ids)), ends], terms

  weights = {"tokens": token_weight, "grounding": grounding_weight}

  def loss_fn(params, batch):
    image, text, terms = features(params, batch)
    log_scale = model.family.log_logit_scale(params)
    if loss == "meru":
      c = jnp.exp(params["curv"])
      value, logits = meru_loss(lorentz.exp_map0(image, c), lorentz.exp_map0(text, c),
                                log_scale, batch["caption"], c)
    elif loss == "sigmoid":
      value, logits = sigmoid_loss(model.geometry.lift(image), model.geometry.lift(text),
                                   log_scale, params["logit_bias"].reshape(()),
                                   batch["caption"])
    else:
      image, text = model.geometry.lift(image), model.geometry.lift(text)
      value, logits = contrastive_loss(image, text, log_scale, batch["caption"]), image @ text.T
    value = value + sum(weights[k] * term for k, term in terms.items())
    hits = logits.argmax(axis=1)
    accuracy = (batch["caption"][hits] == batch["caption"]).mean()
    metrics = {"loss": value, "batch_i2t_accuracy": accuracy, "logit_scale": jnp.exp(log_scale),
               **{f"loss_{k}": term for k, term in terms.items()}}
    return value, metrics

  return loss_fn


def make_train_step(model, tx, loss="contrastive", token_weight=0.0, grounding_weight=0.0):
  """The step (to be jitted) of `make_loss_fn`'s loss, MERU's logs kept in their bounds."""
  loss_fn = make_loss_fn(model, loss, token_weight, grounding_weight)

  def step(state, batch):
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = clamp_to_bounds(optax.apply_updates(state.params, updates))
    metrics["grad_norm"] = optax.global_norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


def evaluate_now(model, data, step, writer, mesh, image_batch_size):
  """Image -> caption top-1 accuracy over the distinct captions of config.eval.csv (a row
  is right when its image's best caption is one of that image's captions)."""
  embedder = embedding.Embedder(model, embedding.EmbedOptions(image_batch_size=image_batch_size),
                                mesh)
  images = embedder.images(data.image_paths)
  texts, _ = embedder.texts(data.captions)
  best = model.geometry.similarity(images, texts).argmax(axis=1)
  right = {(i, c) for i, c in data.rows}
  accuracy = float(np.mean([(i, best[i]) in right for i in range(len(images))]))
  if writer is not None:
    writer.write(step, {"eval/i2t_accuracy": accuracy})
    tqdm.tqdm.write(f"step {step} evaluation: i2t_accuracy={accuracy:.4f} "
                    f"({len(data.captions)} captions)")


class Contrastive:
  """The contrastive objective on both towers (`trainer.run.Objective`)."""

  resume_rules = config_values.ResumeRules(added_keys={"loss": "contrastive",
                                                      "token_loss_weight": 0.0,
                                                      "grounding_loss_weight": 0.0})
  curve_panels = (("loss", ("loss",)), ("accuracy", ("batch_i2t_accuracy", "eval/i2t_accuracy")),
                  ("logit scale", ("logit_scale",)))

  def __init__(self, config):
    self.config = config
    self.rows_per_step = config.batch_size
    self.inputs = [("train_csv", config.train_csv)]

  def check(self, ctx):
    config = self.config
    for key in ("batch_size", "log_every", "checkpoint_every"):
      config_values.number(config, key, 1, integer=True)
    config_values.number(config, "lr", 0, low_open=True)
    if config.loss not in LOSSES:
      raise errors.ConfigError(f"config.loss={config.loss!r}: use one of {', '.join(LOSSES)}")
    for key in TOKEN_TERMS:
      if config_values.number(config, key, 0) and config.loss != "contrastive":
        raise errors.ConfigError(f"config.{key}={config[key]}: the token-level terms are built "
                                 "for loss='contrastive'")
    errors.require_writable_dir(config.workdir, "workdir")
    for csv in (config.train_csv, config.eval.csv):  # a generated set's files as written
      if csv and os.path.exists(csv):
        sealed.verify_enclosing(csv)
    # A bad row fails before anything is written.
    if read_pairs(config.train_csv)[2] is None and config.grounding_loss_weight:
      raise errors.ConfigError(f"config.grounding_loss_weight={config.grounding_loss_weight}: "
                               f"{config.train_csv} has no regions column (grounding)")
    if config.eval.csv:
      read_pairs(config.eval.csv)
    model_dir_lib.check_locations(config, [("config.train_csv", config.train_csv),
                                           ("config.eval.csv", config.eval.csv)])

  def prepare(self, ctx):
    config = self.config
    model = self.model = models.load(
        model_dir_lib.prepare_model_dir(config, ctx.is_main, ctx.allow_config_change),
        config.scan_layers)
    refusal = model.family.contrastive_refusal(model.model_dir)
    if refusal:
      raise errors.UserError(f"{model.model_dir}: {refusal}")
    loss = config.loss
    if model.geometry.name != LOSSES[loss]:
      raise errors.ConfigError(f"config.loss={loss!r}: defined on the {LOSSES[loss]}; "
                               f"{model.model_dir} lives in {model.geometry.name} space")
    if loss == "sigmoid" and "logit_bias" not in model.params:
      raise errors.ConfigError(f"config.loss='sigmoid': {model.model_dir} stores no "
                               "logit_bias (SigLIP's loss is built for SigLIP checkpoints)")
    for key in TOKEN_TERMS:
      if config[key] and family_lib.TOKEN_FEATURES not in model.family.capabilities:
        raise errors.ConfigError(f"config.{key}={config[key]}: the {model.family.name} family "
                                 "has no per-token features")
    if ctx.is_main:
      model_dir_lib.save_model_info(model, config.workdir)
    pairs = lambda path: PairData(path, model.tokenizer, model.preprocessing, model.max_length,
                                  model.pool_index if config.grounding_loss_weight else None)
    self.data = pairs(config.train_csv)
    self.eval_data = pairs(config.eval.csv) if config.eval.csv else None
    if config.batch_size > len(self.data.rows):
      raise errors.ConfigError(f"config.batch_size={config.batch_size}: more than the "
                               f"{len(self.data.rows)} rows of {config.train_csv}")
    ctx.watch.lap("load")
    meru = config.loss == "meru"  # MERU's recipe: its sin-cos position table stays fixed,
    return run.Plan(model.params, tuple(k for k in model.params  # and no decay of gains,
                                        if k not in model.family.buffers),  # biases, scalars
                    loop.total_steps(config, len(self.data.rows) // config.batch_size),
                    frozen=MERU_FROZEN if meru else (), decay_matrices_only=meru)

  def begin(self, ctx, state, left_fresh, state_sharding, tx):
    config, mesh = self.config, ctx.mesh
    step = jax.jit(make_train_step(self.model, tx, config.loss, config.token_loss_weight,
                                   config.grounding_loss_weight),
                   in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    evaluate = None
    if self.eval_data is not None:
      evaluate = lambda s, st: evaluate_now(self.model.with_params(st.params), self.eval_data, s,
                                            ctx.writer, mesh, config.eval.image_batch_size)
    return run.Steps(state, step, lambda s: self.data.batch(s, config.batch_size, config.seed),
                     evaluate)

  def finish(self, params):
    export_dir = model_dir_lib.export(self.model, params, self.config)
    return {"export_dir": export_dir, "rows": len(self.data.rows)}, f"export: {export_dir}"


def train(config, allow_config_change=False):
  """Trains (or resumes) in config.workdir (`trainer.run.train`) -> the final TrainState;
  exports the model to config.export_dir (default workdir/export)."""
  return run.train(config, Contrastive(config), allow_config_change)


def main(argv):
  del argv
  train(FLAGS.config, FLAGS.allow_config_change)


FLAGS = flags.FLAGS

if __name__ == "__main__":
  cli.define_train_flags("a configs/contrastive/*.py file")
  flags.mark_flags_as_required(["config"])
  cli.run(main)
