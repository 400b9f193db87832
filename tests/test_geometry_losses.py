"""Geometry and loss terms against hand-computed values and float64 numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tolerances
from hierre_jax.geometry import sphere
from hierre_jax.radial import losses


def np_ext(x, y, r):
  u, w = x - r, y - x
  cos = np.sum(u * w, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))
  return np.arccos(np.clip(cos, -1, 1))


def unit(rng, *shape):
  v = rng.normal(size=shape)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_hand_computed_geometry():
  r = jnp.zeros(2)
  x = jnp.array([1.0, 0.0])
  assert float(sphere.radius(jnp.array([3.0, 4.0]), r)) == pytest.approx(5.0)
  assert float(sphere.exterior_angle(x, jnp.array([1.0, 1.0]), r)) == pytest.approx(np.pi / 2)
  assert float(sphere.exterior_angle(x, jnp.array([0.0, 1.0]), r)) == pytest.approx(
      3 * np.pi / 4, abs=1e-6)
  # Along the ray r -> x the angle is 0 (up to the cosine margin), behind x it is pi.
  assert float(sphere.exterior_angle(x, jnp.array([2.0, 0.0]), r)) < 2e-3
  assert float(sphere.exterior_angle(x, jnp.array([0.5, 0.0]), r)) > np.pi - 2e-3
  # A root off the origin: r = (0, 1), x = (1, 1), y = (2, 2): u = (1, 0), w = (1, 1) -> pi/4.
  assert float(sphere.exterior_angle(jnp.array([1.0, 1.0]), jnp.array([2.0, 2.0]),
                                       jnp.array([0.0, 1.0]))) == pytest.approx(np.pi / 4)


@pytest.mark.reordering
def test_matches_float64_reference(rng):
  x, y, r = unit(rng, 64, 32), unit(rng, 64, 32), unit(rng, 32)
  got = sphere.exterior_angle(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                jnp.asarray(r, jnp.float32))
  np.testing.assert_allclose(got, np_ext(x, y, r), atol=1e-5)
  # float32 sums of 32 squares of size <= 4 against float64.
  tolerances.assert_reordered_close(sphere.radius(jnp.asarray(x, jnp.float32), r),
                                    np.linalg.norm(x - r, axis=-1), terms=32, scale=4.0)
  tolerances.assert_reordered_close(
      np.linalg.norm(sphere.normalize(jnp.asarray(x * 3.0)), axis=-1), np.ones(64), terms=32)


@pytest.mark.parametrize("case", ["identical", "x_is_root", "collinear_ahead",
                                  "collinear_behind"])
def test_gradients_finite_at_degenerate_points(case):
  r = sphere.normalize(jnp.array([1.0, 0.2, -0.3]))
  x = sphere.normalize(jnp.array([0.3, 1.0, 0.1]))
  y = {"identical": x, "x_is_root": sphere.normalize(jnp.array([0.0, 0.0, 1.0])),
       "collinear_ahead": x + 0.5 * (x - r), "collinear_behind": x - 0.5 * (x - r)}[case]
  if case == "x_is_root":
    x = r
  value, grads = jax.value_and_grad(lambda a, b, c: sphere.exterior_angle(a, b, c),
                                    argnums=(0, 1, 2))(x, y, r)
  assert np.isfinite(value)
  for g in grads:
    assert np.all(np.isfinite(g)), (case, grads)
  if case in ("identical", "x_is_root"):
    assert float(value) == pytest.approx(np.pi / 2)
  assert np.all(np.isfinite(jax.grad(lambda a: sphere.radius(a, r))(r)))


def reference_losses(emb, root, orig):
  """Direct float64 transcription of SPEC section 3."""
  b = emb.shape[0]
  p = np.array([[np_ext(emb[j, i], emb[j, i + 1], root) for j in range(b)] for i in range(3)])
  q = np.array([[np_ext(emb[j, i], emb[j, 4 + i], root) for j in range(b)] for i in range(3)])
  le = p.mean() - q.mean()
  pf, nf = p.flatten(), -q.flatten()
  s = pf + nf
  lm = s[np.argmax(pf)] + s[np.argmax(nf)]
  lp = (1 - np.mean([emb[j, k] @ orig[j, k] for j in range(b) for k in range(8)])) / 2
  return p, q, le, lm, lp


def test_loss_terms_match_numpy(rng):
  emb, orig, root = unit(rng, 5, 8, 16), unit(rng, 5, 8, 16), unit(rng, 16)
  p, q, le, lm, lp = reference_losses(emb, root, orig)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  gp, gq = losses.re_angles(f32(emb), f32(root))
  np.testing.assert_allclose(gp, p, atol=1e-5)
  np.testing.assert_allclose(gq, q, atol=1e-5)
  assert float(losses.mean_term(gp, -gq)) == pytest.approx(le, abs=1e-5)
  assert float(losses.minimax_term(gp, -gq)) == pytest.approx(lm, abs=1e-5)
  assert float(losses.pullback_loss(f32(emb), f32(orig))) == pytest.approx(lp, abs=1e-6)
  total, metrics = losses.total_loss(f32(emb), f32(root), f32(orig), 10.0, 1.0, 1.0)
  assert float(total) == pytest.approx(10 * lp + le + lm, abs=1e-4)
  total0, metrics0 = losses.total_loss(f32(emb), f32(root), None, 0.0, 2.0, 0.5)
  assert float(total0) == pytest.approx(2 * le + 0.5 * lm, abs=1e-4)
  assert "loss_pullback" not in metrics0 and "loss_pullback" in metrics


def test_pullback_is_zero_for_unchanged_embeddings(rng):
  e = jnp.asarray(unit(rng, 3, 8, 16), jnp.float32)
  assert float(losses.pullback_loss(e, e)) == pytest.approx(0.0, abs=1e-6)


def reference_terms(emb, root, tiers=losses.ALL_TIERS, negatives=True, ec=None):
  """Float64 transcription of SPEC sections 3 and 6 -> (L_e, L_m) for a chain of tiers,
  with or without negatives, RE angles or entailment-cone terms (ec = (K, margin))."""
  pos, neg = [], []
  for general, specific in zip(tiers[:-1], tiers[1:]):
    for row in emb:
      x = row[general]
      p, q = np_ext(x, row[specific], root), np_ext(x, row[4 + general], root)
      if ec:
        psi = np.arcsin(min(1.0, ec[0] / np.linalg.norm(x - root)))
        pos.append(max(0.0, p - psi + ec[1]))
        neg.append(max(0.0, -(q - psi) + ec[1]))
      else:
        pos.append(p)
        neg.append(-q)
  pf, nf = np.array(pos), np.array(neg)
  if not negatives:
    return pf.mean(), pf.max()
  s = pf + nf
  return pf.mean() + nf.mean(), s[np.argmax(pf)] + s[np.argmax(nf)]


@pytest.mark.parametrize("tiers, negatives, ec", [
    ((0, 1, 2, 3), True, None), ((0, 2, 3), True, None), ((0, 1, 2, 3), False, None),
    ((0, 1, 2, 3), True, (0.1, 0.05)), ((0, 2, 3), False, (0.3, 0.2))])
def test_loss_variants_match_numpy(rng, tiers, negatives, ec):
  emb, orig, root = unit(rng, 6, 8, 16), unit(rng, 6, 8, 16), unit(rng, 16)
  le, lm = reference_terms(emb, root, tiers, negatives, ec)
  cols = list(tiers) + [4 + t for t in tiers]  # L_p over the texts of the tiers trained on
  lp = (1 - np.mean(np.sum(emb[:, cols] * orig[:, cols], -1))) / 2
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  total, metrics = losses.total_loss(f32(emb), f32(root), f32(orig), 10.0, 1.0, 1.0, tiers,
                                     negatives, ec)
  assert float(metrics["loss_re"]) == pytest.approx(le, abs=1e-5)
  assert float(metrics["loss_minimax"]) == pytest.approx(lm, abs=1e-5)
  assert float(metrics["loss_pullback"]) == pytest.approx(lp, abs=1e-6)
  assert float(total) == pytest.approx(10 * lp + le + lm, abs=1e-4)
  if ec:  # the hinge is active for some pairs and clamps others: both paths are exercised
    p, q = losses.re_angles(f32(emb), f32(root), tiers)
    pos, neg = losses.ec_terms(p, q, f32(emb), f32(root), *ec, tiers)
    values = np.concatenate([np.ravel(pos), np.ravel(neg)])
    assert (values == 0).any() and (values > 0).any()


def test_ec_mean_term_tends_to_the_re_term_plus_twice_the_margin(rng):
  """Once every hinge is active (m > pi), psi cancels between the positive and negative
  term of each pair: L_e(EC) = L_e(RE) + 2 m."""
  emb, root = jnp.asarray(unit(rng, 6, 8, 16), jnp.float32), jnp.asarray(unit(rng, 16))
  mean_term = lambda ec: float(losses.total_loss(emb, root, None, 0.0, 1.0, 0.0, ec=ec)[1][
      "loss_re"])
  gaps = {m: mean_term((0.3, m)) - mean_term(None) for m in (0.0, 4.0, 10.0)}
  assert abs(gaps[0.0]) > 0.1  # hinges clamp at m = 0: not the RE term
  assert gaps[4.0] == pytest.approx(8.0, abs=1e-4)
  assert gaps[10.0] == pytest.approx(20.0, abs=1e-4)


def test_ec_gradients_finite_inside_the_aperture_clip(rng):
  emb, root = jnp.asarray(unit(rng, 4, 8, 16), jnp.float32), jnp.asarray(unit(rng, 16))
  # K = 1.5 > many radii ||x - r||: psi is clipped at pi/2 there.
  loss = lambda e: losses.total_loss(e, root, None, 0.0, 1.0, 1.0, ec=(1.5, 0.1))[0]
  assert np.all(np.isfinite(jax.grad(loss)(emb)))
  psi = sphere.half_aperture(emb[:, 0], root, 1.5)
  assert float(psi.max()) == pytest.approx(np.pi / 2, abs=2e-3)


def test_clip_contrastive_matches_numpy(rng):
  text, image, scale = unit(rng, 5, 16), unit(rng, 5, 16), 2.3
  logits = np.exp(scale) * text @ image.T
  log_softmax = lambda z, axis: z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
  targets = np.arange(5)
  want = -(log_softmax(logits, 1)[targets, targets].mean()
           + log_softmax(logits, 0)[targets, targets].mean()) / 2
  got = losses.contrastive(jnp.asarray(text, jnp.float32), jnp.asarray(image, jnp.float32),
                                jnp.float32(scale))
  assert float(got) == pytest.approx(want, rel=1e-5)
  # Matched pairs (image = its own text) score lower than shuffled ones.
  assert float(losses.contrastive(text, text, scale)) < float(got)
