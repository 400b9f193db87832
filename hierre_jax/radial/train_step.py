"""The RE train step (SPEC sections 3 and 6) and what it needs besides the batch: the
pull-back targets, the frozen image features of the contrastive ablation, a fixed root.
The run around it is `hierre_jax.train`'s."""
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hierre_jax import embedding
from hierre_jax.common import sharding
from hierre_jax.radial import losses
from hierre_jax.radial import train_batches


def trained_groups(config, family):
  """The top-level parameter groups the optimizer updates (config.trainable): the family's
  text tower, or "root" (a free root vector params["root"], towers frozen; SPEC section
  6). Everything else stays bit-identical."""
  return family.text_groups if config.trainable == "text_tower" else ("root",)


def pulls_back(config):
  """Whether the loss has the pull-back term L_p (never when only the root trains: the
  frozen tower's features are then the pretrained ones)."""
  return bool(config.lambda_p) and config.trainable == "text_tower"


def host_batch(config, batches, step, shards):
  """The step's inputs from `TrainBatches`: (texts, [B, 8] text index), the texts packed
  in rows of the model's maximum length in `shards` parts (config.pack_texts; with the
  root text when it is the tower's own) or padded per length group; for config.loss ==
  "contrastive" (padded) `batches.contrastive_batch(step, config.tiers)`."""
  if config.loss == "contrastive":
    return batches.contrastive_batch(step, tuple(config.tiers))
  if config.pack_texts:
    texts = batches.packed_batch(step, shards, batches.ids.shape[-1],
                                 config.pack_rows_multiple, config.root == "empty_string")
  else:
    texts = batches.batch(step)
  return texts, batches.text_indices(step)


def make_train_step(model, config, tx, mesh, state_sharding):
  """-> jitted fn(state, tables, batch) -> (state, metrics), batch as `host_batch` gives it.

  The root is the tower's embedding of the empty string unless params hold their own
  params["root"] (config.root); packed batches carry the empty string themselves
  (`host_batch`), padded ones get its ids padded to the family's maximum length. `tables` is what
  `step_tables` returns: "pullback" (None, the frozen text params, or the frozen features
  of every training text looked up by the text index) and "images" (config.loss ==
  "contrastive": the frozen features of every training image, looked up by the image index).
  """
  encode = embedding.text_encoder(model, config.remat, config.compute_dtype)
  encode_packed = embedding.packed_text_encoder(model, config.remat, config.compute_dtype)
  root_ids = embedding.root_ids(model.tokenizer, model.max_length)
  trained = trained_groups(config, model.family)
  lambda_p = config.lambda_p if pulls_back(config) else 0.0
  own_root = config.root == "empty_string"  # the tower's own root: it moves with the weights

  def embed_rows(params, texts):
    """The batch's texts -> ([B, 8, P], the [P] root of the empty string if own_root).

    Packed (`packing.Packed`), the root is the last text of every shard; padded per
    length group ([B, n_g, L_g] ids each), it rides along with the first group, padded
    to its length (one pass less; padding never reaches a text's pooled token).
    """
    if config.pack_texts:
      emb = encode_packed(params, texts)  # [S, N, P]
      root = emb[0, -1] if own_root else None
      return emb[:, :emb.shape[1] - own_root].reshape(-1, 8, emb.shape[-1]), root
    flat = [g.reshape(-1, g.shape[-1]) for g in texts]
    if own_root:
      flat[0] = jnp.concatenate([flat[0], root_ids[:, :flat[0].shape[-1]]])
    embs = [encode(params, ids) for ids in flat]
    root = embs[0][-1] if own_root else None
    embs = [e[:g.shape[0] * g.shape[1]].reshape(*g.shape[:2], -1) for e, g in zip(embs, texts)]
    return train_batches.merge_groups(embs, config.length_groups), root

  def hierarchy_loss(params, tables, batch):
    """The RE loss or its ablations (SPEC sections 3 and 6) on whole rows."""
    texts, text_index = batch
    emb, root = embed_rows(params, texts)
    if not own_root:
      root = params["root"]
    if config.trainable == "root":
      emb = jax.lax.stop_gradient(emb)  # frozen towers: no backward pass through them
    emb_orig = None
    if lambda_p:
      emb_orig = (tables["pullback"][text_index] if config.pullback_cache
                  else embed_rows(tables["pullback"], texts)[0])
    ec = (config.ec_k, config.ec_margin) if config.loss == "ec" else None
    return losses.total_loss(emb, root, emb_orig, lambda_p, config.lambda_e,
                             config.lambda_m, tuple(config.tiers), config.negatives, ec,
                             model.geometry)

  def contrastive_loss(params, tables, batch):
    """The contrastive objective between each row's image and one of its positive texts
    (+ L_p)."""
    ids, text_index, image_index = batch
    text = encode(params, ids)
    loss = losses.contrastive(text, tables["images"][image_index],
                              jax.lax.stop_gradient(model.family.log_logit_scale(params)))
    metrics = {"loss_clip": loss}
    if lambda_p:
      orig = (tables["pullback"][text_index[:, 0]] if config.pullback_cache
              else encode(tables["pullback"], ids))
      metrics["loss_pullback"] = losses.pullback_loss(text, jax.lax.stop_gradient(orig))
      loss = loss + lambda_p * metrics["loss_pullback"]
    return loss, dict(metrics, loss=loss)

  loss_fn = contrastive_loss if config.loss == "contrastive" else hierarchy_loss

  def step(state, tables, batch):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, tables, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.global_norm({k: grads[k] for k in trained})
    # Finite too, or the run stops before anything of this step is saved (`check_finite`).
    metrics["update_norm"] = optax.global_norm({k: updates[k] for k in trained})
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  replicated = sharding.replicated(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(state_sharding, replicated, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, replicated))


def pullback_targets(config, model, batches, mesh, steps):
  """What the train step needs for the pull-back term L_p (SPEC section 3) in `steps`.

  None without the term (`pulls_back`). With config.pullback_cache: a [U, P] table over the U
  distinct training texts holding the frozen tower's features of the texts that `steps`
  use (all of them from one epoch on), computed once here instead of a frozen forward
  pass at every step; U * P * 4 bytes on every device (174 MB for the 85K HierarCaps
  texts at P=512). Else the frozen text params, a separate copy (the donated train
  state must not share buffers with them).
  """
  if not pulls_back(config):
    return None
  frozen = model.text_params()
  if not config.pullback_cache:
    return jax.device_put(jax.tree.map(np.array, frozen), sharding.replicated(mesh))
  used = np.unique(np.concatenate([np.zeros(0, np.int32)]
                                  + [batches.text_indices(s).ravel() for s in steps]))
  logging.info("pull-back cache: embedding %d of the %d distinct training texts with the "
               "frozen tower", len(used), len(batches.texts))
  table = np.zeros((len(batches.texts), model.embedding_size), np.float32)
  if len(used):  # none when a finished run is restarted
    table[used] = embed_frozen(config, model, [batches.texts[i] for i in used], mesh)
  return jax.device_put(table, sharding.replicated(mesh))


def embed_frozen(config, model, texts, mesh):
  """[N, P] features of `texts` by the pretrained text tower, as evaluations embed them."""
  return embedding.embed_texts(model, model.params, texts, config.eval.text_batch_size, mesh,
                               config.length_multiple, config.eval.pack_texts,
                               config.compute_dtype)


def step_tables(config, model, batches, mesh, steps, image_features=None):
  """The step's constant inputs: {"pullback": `pullback_targets`, "images": None, or for
  config.loss == "contrastive" the [I, P] features of `batches.images` (files under
  config.train_images_dir) by the frozen image tower, read from and added to
  `image_features` ({path: features}, `embedding.Embedder`)} of the pretrained `model`."""
  images = None
  if config.loss == "contrastive":
    embedder = embedding.Embedder(model, embedding.EmbedOptions.from_config(config), mesh,
                                  image_features)
    paths = [os.path.join(config.train_images_dir, name) for name in batches.images]
    images = jax.device_put(embedder.images(paths), sharding.replicated(mesh))
  return {"pullback": pullback_targets(config, model, batches, mesh, steps), "images": images}


def initial_root(config, model, batches, mesh):
  """[P] root of config.root (SPEC section 6) from the pretrained `model`; None for
  "empty_string" (the tower's own, recomputed at every step).

  "mean": the normalised mean of the pretrained features of every text of every training
  row (positives and negatives, all tiers; a text counted as often as it occurs);
  "origin": zeros; "pretrained": the pretrained feature of the empty string.
  """
  if config.root == "empty_string":
    return None
  if config.root == "origin":
    return np.zeros(model.embedding_size, np.float32)
  texts = [""] if config.root == "pretrained" else batches.texts
  feats = embed_frozen(config, model, texts, mesh)
  if config.root == "pretrained":
    return feats[0]
  mean = np.bincount(batches.text_index.ravel(), minlength=len(texts)) @ feats.astype(np.float64)
  return (mean / np.linalg.norm(mean)).astype(np.float32)
