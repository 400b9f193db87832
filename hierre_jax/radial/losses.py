"""The RE training objective (SPEC section 3) and its ablations (SPEC section 6), among
them CLIP's own contrastive objective.

Embeddings of a batch come as [B, 8, D]: positives p1..p4 then negatives n1..n4,
points of the model's space (`geometry`: the sphere unless said), general to specific.
`tiers` (0-based) picks the chain a row trains on: all four, or (0, 2, 3) for the 3-tier
ablation (tier 2 dropped).
"""
import jax
import jax.numpy as jnp

from hierre_jax.geometry import sphere

ALL_TIERS = (0, 1, 2, 3)


def re_angles(emb, root, tiers=ALL_TIERS, geometry=sphere.SPHERE):
  """[B, 8, D], [D] -> (P, Q), each [T-1, B] for T tiers t_1..t_T: P[k, b] =
  ext(p_{t_k}, p_{t_k+1}), Q[k, b] = ext(p_{t_k}, n_{t_k}) (the last tier's negative unused)."""
  general, specific = list(tiers[:-1]), list(tiers[1:])
  pos = emb[:, :4]
  x = pos[:, general]
  p = geometry.exterior_angle(x, pos[:, specific], root)
  q = geometry.exterior_angle(x, emb[:, [4 + t for t in general]], root)
  return p.T, q.T


def ec_terms(p, q, emb, root, k, margin, tiers=ALL_TIERS, geometry=sphere.SPHERE):
  """Entailment-cone margin terms (SPEC section 6) from the angles (P, Q) of `re_angles`
  -> (positive, negative), each [T-1, B]: max(0, ext(p_i, p_i+1) - psi(p_i) + m) and
  max(0, psi(p_i) - ext(p_i, n_i) + m)."""
  psi = geometry.half_aperture(emb[:, list(tiers[:-1])], root, k).T
  return jax.nn.relu(p - psi + margin), jax.nn.relu(psi - q + margin)


def mean_term(pos, neg=None):
  """L_e = mean(pos) + mean(neg); RE: pos = P, neg = -Q. Without negatives: mean(pos)."""
  return jnp.mean(pos) + (0.0 if neg is None else jnp.mean(neg))


def minimax_term(pos, neg=None):
  """L_m = S[i*] + S[j*], S = Pf + Nf, Pf = pos flat, Nf = neg flat, i* = argmax Pf,
  j* = argmax Nf; RE: pos = P, neg = -Q. Without negatives S = Pf and L_m = max Pf."""
  pf = pos.ravel()
  if neg is None:
    return jnp.max(pf)
  nf = neg.ravel()
  s = pf + nf
  return s[jnp.argmax(pf)] + s[jnp.argmax(nf)]


def pullback_loss(emb, emb_orig, geometry=sphere.SPHERE):
  """L_p over all texts: [..., D] x2 -> scalar; on the sphere (1 - mean <e_ft, e_orig>) / 2
  (`Geometry.pullback`)."""
  return geometry.pullback(emb, emb_orig)


def contrastive(text, image, logit_scale):
  """CLIP's symmetric contrastive loss: [B, D] unit text and image features of B pairs,
  scalar log-scale -> mean of the text->image and image->text cross-entropies of
  exp(logit_scale) * <t_i, v_j> with the pair's own partner as the target."""
  logits = jnp.exp(logit_scale) * text @ image.T
  diagonal = jnp.diagonal(logits)
  return (jnp.mean(jax.nn.logsumexp(logits, axis=1) - diagonal)
          + jnp.mean(jax.nn.logsumexp(logits, axis=0) - diagonal)) / 2.0


def total_loss(emb, root, emb_orig, lambda_p, lambda_e, lambda_m, tiers=ALL_TIERS,
               negatives=True, ec=None, geometry=sphere.SPHERE):
  """L = lambda_p L_p + lambda_e L_e + lambda_m L_m; returns (loss, metrics dict).

  `emb_orig` ([B, 8, D], frozen pretrained embeddings) may be None when lambda_p == 0.
  Ablations: `tiers` the chain trained on (L_p over its positives and negatives);
  negatives=False drops the Q terms; ec=(K, margin) puts the entailment-cone terms in
  place of P and -Q.
  """
  p, q = re_angles(emb, root, tiers, geometry)
  pos, neg = ec_terms(p, q, emb, root, *ec, tiers, geometry) if ec else (p, -q)
  if not negatives:
    neg = None
  terms = {"loss_re": mean_term(pos, neg), "loss_minimax": minimax_term(pos, neg)}
  loss = lambda_e * terms["loss_re"] + lambda_m * terms["loss_minimax"]
  if lambda_p:
    texts = list(tiers) + [4 + t for t in tiers]
    terms["loss_pullback"] = pullback_loss(emb[:, texts], jax.lax.stop_gradient(
        emb_orig[:, texts]), geometry)
    loss = loss + lambda_p * terms["loss_pullback"]
  metrics = dict(terms, loss=loss, angle_pos=jnp.mean(p), angle_neg=jnp.mean(q))
  return loss, metrics
