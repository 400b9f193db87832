"""Obviously-correct slow references the tests compare the library with: features of one
text or image at a time, the HierarCaps retrieval loop, and parity with transformers'
PyTorch models."""
import jax
import numpy as np
import pytest

from hierre_jax import embedding
from hierre_jax import models
from hierre_jax.data import packing
from hierre_jax.data import text as text_ids

def direct_text_embedder(model_dir):
  """-> embed(texts, params=None) -> [N, P] unit features (of `params`, default the
  checkpoint's), one text at a time, unpadded: the obviously-correct embedding. Each text
  length compiles once for every call of one embedder."""
  model = models.load(model_dir)
  encode = jax.jit(embedding.text_encoder(model))

  def embed(texts, params=None):
    # On the host, whichever device they come from: one compilation per length.
    params = jax.device_get(model.params if params is None else params)
    ids = text_ids.tokenize(model.tokenizer, texts, model.max_length)
    return np.stack([np.asarray(encode(params, np.asarray([t], np.int32)))[0] for t in ids])

  return embed


def direct_text_features(model_dir, texts, params=None):
  """`direct_text_embedder`'s features of `texts` -> [N, P]."""
  return direct_text_embedder(model_dir)(texts, params)


def direct_image_features(model_dir, paths):
  """One image at a time, preprocessed by the family's rule -> [N, P] unit features."""
  model = models.load(model_dir)
  encode = jax.jit(embedding.image_encoder(model))
  return np.stack([np.asarray(encode(model.params, model.preprocessing.preprocess(p)[None]))[0]
                   for p in paths])


def slow_reference(rows, row_images, emb, root, image_emb, num_levels=50):
  """SPEC section 4 transcribed with loops: strings compared, duplicates kept."""
  scipy_stats = pytest.importorskip("scipy.stats")
  texts = [t for row in rows for t in row]
  e = np.stack([emb[t] for t in texts]).astype(np.float64)
  radius = np.linalg.norm(e - root, axis=1)
  levels = np.linspace(radius.min(), radius.max(), num_levels)
  precisions, recalls = [], []
  for image in sorted(set(row_images)):
    s = e @ image_emb[image].astype(np.float64)
    preds = []
    for t in levels:
      text = texts[int(np.argmax(np.where(radius <= t, s, -np.inf)))]
      if not preds or preds[-1] != text:
        preds.append(text)
    its_rows = [row for row, name in zip(rows, row_images) if name == image]
    gt = {t for row in its_rows for t in row}
    precisions.append(len(set(preds) & gt) / max(1, len(set(preds))))
    recalls.append(np.mean([any(row[k] in preds for row in its_rows) for k in range(4)]))
  ranks = [np.argsort(np.argsort([np.linalg.norm(emb[t] - root) for t in row], kind="stable"))
           for row in rows]  # the release ranks a row's radii with a stable sort
  taus = [scipy_stats.kendalltau(r, [1, 2, 3, 4]).statistic for r in ranks]
  return np.mean(precisions), np.mean(recalls), np.nanmean(taus)


# The empty string (the RE root), short texts, and one longer than any family's maximum.
TEXTS = ["", "a photo of a cat", "dog", "A man riding a horse on a beach at sunset, "
         "with waves in the background and birds flying overhead", "x " * 90]


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def random_images(n, size, seed=1):
  """[n, size, size, 3] float32 pixels, the scale of preprocessed images."""
  return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def torch_reference(model_dir, ids, mask, pixels):
  """transformers' model of the directory (AutoModel): unnormalised text features, image
  features and logits_per_text, for padded ids with their attention mask."""
  torch = pytest.importorskip("torch")
  import transformers
  model = transformers.AutoModel.from_pretrained(model_dir).eval()
  ids, mask = torch.from_numpy(ids).long(), torch.from_numpy(mask).long()
  nchw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    text = model.get_text_features(input_ids=ids, attention_mask=mask)
    image = model.get_image_features(pixel_values=nchw)
    logits = model(input_ids=ids, attention_mask=mask, pixel_values=nchw).logits_per_text
  pooled = lambda x: getattr(x, "pooler_output", x).numpy()
  return pooled(text), pooled(image), logits.numpy()


def assert_parity(model_dir, image_size=None):
  """Text features (padded to the family's maximum length, and packed), image
  features at `image_size` (default the preprocessing's) and logits, in both layer layouts,
  against PyTorch."""
  model = models.load(model_dir)
  family, tok = model.family, model.tokenizer
  id_lists = text_ids.tokenize(tok, TEXTS, model.max_length)
  assert max(map(len, id_lists)) == model.max_length  # the long text is truncated
  ids = text_ids.pad(id_lists, model.max_length, tok.pad_token_id)
  mask = np.zeros_like(ids)
  for i, t in enumerate(id_lists):
    mask[i, :len(t)] = 1
  size = image_size or model.preprocessing.crop
  pixels = random_images(3, size)
  want_text, want_image, want_logits = torch_reference(model_dir, ids, mask, pixels)
  # Signal: distinct inputs give distinct features, so the comparison is not of noise.
  for want in (want_text, want_image):
    cosines = unit(want) @ unit(want).T
    assert cosines[np.triu_indices(len(want), 1)].max() < 0.999
  for scan_layers in (True, False):
    config, params = family.read_checkpoint(model_dir, scan_layers)
    encoders = family.encoders(config)
    text = np.asarray(jax.jit(encoders.text)(params, ids))
    image = np.asarray(jax.jit(encoders.image)(params, pixels))
    np.testing.assert_allclose(text, want_text, rtol=1e-5, atol=1e-5 * np.abs(want_text).max())
    np.testing.assert_allclose(image, want_image, rtol=1e-5,
                               atol=1e-5 * np.abs(want_image).max())
    np.testing.assert_allclose(unit(text), unit(want_text), atol=1e-5)
    np.testing.assert_allclose(unit(image), unit(want_image), atol=1e-5)
    scale = float(np.exp(family.log_logit_scale(params)))
    bias = float(np.asarray(params.get("logit_bias", 0.0)).reshape(()))  # SigLIP's
    np.testing.assert_allclose(scale * unit(text) @ unit(image).T + bias, want_logits,
                               atol=1e-5 * scale)
    # Packed several to a row in two shards (the train step's layout), each text pooled
    # at its own token with its own positions and attention: its features alone.
    texts = [(np.asarray(t, np.int32), int(family.pool_index(config, np.asarray(t))))
             for t in id_lists + id_lists[::-1]]
    packed = packing.pack([texts[:len(TEXTS)], texts[len(TEXTS):]], model.max_length,
                          tok.pad_token_id)
    # Several texts share a row, except where every text fills it (SigLIP pads each).
    assert packed.ids.shape[1] < len(TEXTS) or min(map(len, id_lists)) == model.max_length
    got = np.asarray(jax.jit(encoders.packed_text)(params, packed)).reshape(2 * len(TEXTS), -1)
    np.testing.assert_allclose(unit(got), unit(np.concatenate([want_text, want_text[::-1]])),
                               atol=1e-5)
    if not family.has_stacked_layers(params):
      break  # a family of one layout
