"""The RE training objective (SPEC section 3).

Embeddings of a batch come as [B, 8, D]: positives p1..p4 then negatives n1..n4,
unit-normalised, general to specific.
"""
import jax
import jax.numpy as jnp

from hierre_jax import geometry


def re_angles(emb, root):
  """[B, 8, D], [D] -> (P, Q), each [3, B]: P[i,b] = ext(p_i, p_i+1), Q[i,b] = ext(p_i, n_i)."""
  pos, neg = emb[:, :4], emb[:, 4:]
  p = geometry.exterior_angle(pos[:, :3], pos[:, 1:], root)
  q = geometry.exterior_angle(pos[:, :3], neg[:, :3], root)
  return p.T, q.T


def mean_re_loss(p, q):
  """L_e = mean(P) - mean(Q)."""
  return jnp.mean(p) - jnp.mean(q)


def minimax_loss(p, q):
  """L_m = S[i*] + S[j*], S = Pf + Nf, Pf = P flat, Nf = -Q flat, i* = argmax Pf, j* = argmax Nf."""
  pf, nf = p.ravel(), -q.ravel()
  s = pf + nf
  return s[jnp.argmax(pf)] + s[jnp.argmax(nf)]


def pullback_loss(emb, emb_orig):
  """L_p = (1 - mean <e_ft, e_orig>) / 2 over all texts: [..., D] x2 -> scalar."""
  return (1.0 - jnp.mean(jnp.sum(emb * emb_orig, axis=-1))) / 2.0


def total_loss(emb, root, emb_orig, lambda_p, lambda_e, lambda_m):
  """L = lambda_p L_p + lambda_e L_e + lambda_m L_m; returns (loss, metrics dict).

  `emb_orig` ([B, 8, D], frozen pretrained embeddings) may be None when lambda_p == 0.
  """
  p, q = re_angles(emb, root)
  terms = {"loss_re": mean_re_loss(p, q), "loss_minimax": minimax_loss(p, q)}
  loss = lambda_e * terms["loss_re"] + lambda_m * terms["loss_minimax"]
  if lambda_p:
    terms["loss_pullback"] = pullback_loss(emb, jax.lax.stop_gradient(emb_orig))
    loss = loss + lambda_p * terms["loss_pullback"]
  metrics = dict(terms, loss=loss, angle_pos=jnp.mean(p), angle_neg=jnp.mean(q))
  return loss, metrics
