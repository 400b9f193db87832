"""MERU (FAMILIES_SPEC section 1): the Lorentz geometry against float64 formulas and
geoopt, the towers against a PyTorch twin written from the spec (`meru_twin`), the
release's .pth layout both ways, and bad checkpoints named in one line."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax import models
from hierre_jax.geometry import lorentz
from hierre_jax.models.meru import checkpoint
from hierre_jax.models.meru import random_init

torch = pytest.importorskip("torch")
from benchmarks import meru_twin  # pylint: disable=g-import-not-at-top (needs torch)


@pytest.fixture(scope="module")
def meru_dir(tmp_path_factory):
  return random_init.write_random_meru(str(tmp_path_factory.mktemp("meru")),
                                       random_init.TINY_TEXT, random_init.TINY_VISION, 64, seed=1)


def points(rng, n, d, scale):
  """n points of the hyperboloid (space parts) at tangent norms around `scale`."""
  return meru_twin.exp_map0_64(rng.normal(size=(n, d)) * scale / np.sqrt(d), 1.0)


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_lorentz_functions_equal_the_float64_formulas(c):
  rng = np.random.default_rng(0)
  direction = rng.normal(size=(64, 16))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  v = direction * rng.uniform(0.05, 6.0, size=(64, 1)) / np.sqrt(c)  # below the sinh clamp
  x = meru_twin.exp_map0_64(v, c)
  y = meru_twin.exp_map0_64(rng.normal(size=(64, 16)) * 0.8, c)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  # float32 evaluation of a few sqrt/sinh/acosh in a row: relative error ~1e-6 of the
  # values; the arccos near 0 and pi amplifies it, hence the looser angle tolerance.
  np.testing.assert_allclose(lorentz.exp_map0(f32(v), c), x, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(lorentz.log_map0(f32(x), c), v, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(lorentz.distance(f32(x), f32(y), c), meru_twin.dist64(x, y, c),
                             rtol=1e-3, atol=2e-3)
  np.testing.assert_allclose(lorentz.distance0(f32(x), c),
                             np.linalg.norm(v, axis=-1), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(lorentz.half_aperture(f32(x), c), meru_twin.half_aperture64(x, c),
                             atol=2e-3)
  want = meru_twin.oxy_angle64(x, y, c)
  np.testing.assert_allclose(lorentz.oxy_angle(f32(x), f32(y), c), want, atol=3e-3)
  # RE's exterior angle by the law of cosines is MERU's angle when the root is the origin.
  origin = jnp.zeros(16, jnp.float32)
  np.testing.assert_allclose(lorentz.law_of_cosines_angle(f32(x), f32(y), origin, c), want,
                             atol=3e-3)
  # MERU's clamp: past s = sqrt(c)|v| = asinh(2^15) only the sinh argument is capped, so
  # the point's norm saturates at 2^15 / sqrt(c) (it does not keep growing with |v|).
  for length in (20, 50):
    far = np.asarray(lorentz.exp_map0(f32(direction[:1] * length / np.sqrt(c)), c))
    np.testing.assert_allclose(np.linalg.norm(far) * np.sqrt(c), 2.0 ** 15, rtol=1e-5)
  # ... and not when it is another point (a wrong root would pass otherwise).
  root = f32(meru_twin.exp_map0_64(rng.normal(size=16) * 0.5, c))
  moved = np.asarray(lorentz.law_of_cosines_angle(f32(x), f32(y), root, c))
  assert np.abs(moved - want).max() > 0.1


def test_gradients_are_finite_at_the_origin():
  """exp_map0, log_map0, distance0, half_aperture, MERU's angle and the RE loss terms have
  finite gradients at exactly zero (a zero tangent vector, a point at the origin), as MERU's
  own clamps keep them; exp_map0's derivative there is the identity."""
  from hierre_jax.radial import losses
  c = 1.0
  zero = jnp.zeros(8, jnp.float32)
  y = jnp.asarray(np.random.default_rng(0).normal(size=8) * 0.5, jnp.float32)
  scalar = {
      "exp_map0": lambda v: lorentz.exp_map0(v, c).sum(),
      "log_map0": lambda x: lorentz.log_map0(x, c).sum(),
      "distance0": lambda x: lorentz.distance0(x, c),
      "half_aperture": lambda x: lorentz.half_aperture(x, c),
      "oxy_angle at the origin": lambda x: lorentz.oxy_angle(x, y, c),
      "angle to the origin": lambda x: lorentz.oxy_angle(y, x, c),
  }
  for name, fn in scalar.items():
    grad = np.asarray(jax.grad(fn)(zero))
    assert np.isfinite(grad).all(), name
  np.testing.assert_allclose(jax.jacfwd(lambda v: lorentz.exp_map0(v, c))(zero), np.eye(8),
                             atol=1e-6)
  geometry = lorentz.Lorentz(c)
  # a row (4 tiers, 4 negatives) whose first text sits at the origin
  batch = jnp.stack([zero, y, 2 * y, 3 * y, -y, y[::-1], 0.5 * y, -2 * y])[None]
  def ec(e):
    p, q = losses.re_angles(e, zero, geometry=geometry)
    pos, neg = losses.ec_terms(p, q, e, zero, 0.1, 0.1, geometry=geometry)
    return pos.sum() + neg.sum() + p.sum() - q.sum()
  assert np.isfinite(np.asarray(jax.grad(ec)(batch))).all()


def test_lorentz_agrees_with_geoopt():
  geoopt = pytest.importorskip("geoopt")
  rng = np.random.default_rng(1)
  c = 0.7
  x = meru_twin.exp_map0_64(rng.normal(size=(20, 8)), c)
  y = meru_twin.exp_map0_64(rng.normal(size=(20, 8)), c)
  # geoopt's Lorentz(k) holds the full coordinates (time first) with <x, x>_L = -k, curvature
  # -1/k: ours (x_t^2 - |x|^2 = 1/c) with k = 1/c, the time part put in front.
  manifold = geoopt.manifolds.Lorentz(k=torch.tensor(1.0 / c, dtype=torch.float64))
  full = lambda p: torch.from_numpy(np.concatenate([meru_twin.time64(p, c)[:, None], p], 1))
  want = manifold.dist(full(x), full(y)).numpy()
  got = np.asarray(lorentz.distance(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), c))
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3)
  origin = np.zeros((1, 8))
  np.testing.assert_allclose(manifold.dist0(full(x)).numpy(),
                             meru_twin.dist64(x, origin, c), rtol=1e-9)


def test_geometry_interface_on_the_hyperboloid():
  geometry = lorentz.Lorentz(0.5)
  rng = np.random.default_rng(2)
  a = np.asarray(geometry.lift(jnp.asarray(rng.normal(size=(5, 8)), jnp.float32)))
  b = np.asarray(geometry.lift(jnp.asarray(rng.normal(size=(7, 8)), jnp.float32)))
  sims = geometry.similarity(a, b)
  want = a.astype(np.float64) @ b.T - np.outer(meru_twin.time64(a, 0.5), meru_twin.time64(b, 0.5))
  np.testing.assert_allclose(sims, want, rtol=1e-5)
  # Higher inner product = nearer: the order of -distance.
  assert (np.argsort(-sims, 1) == np.argsort(meru_twin.dist64(a[:, None], b[None], 0.5), 1)).all()
  centroid = geometry.mean(a, axis=0)
  np.testing.assert_allclose(centroid, meru_twin.exp_map0_64(
      meru_twin.log_map0_64(a.astype(np.float64), 0.5).mean(0), 0.5), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="radius 'cosine': the hyperboloid has geodesic"):
    geometry.radius(a, a[0], "cosine")


def test_meru_tokenizer_cleans_text_as_meru_does(meru_dir, tmp_path):
  """ftfy, HTML entities unescaped twice, whitespace collapsed, then the CLIP BPE: each
  messy text gets the ids of its clean form (transformers' CLIPTokenizer alone keeps "amp"
  and the mojibake)."""
  from hierre_jax.models.clip import tokenizer as clip_tokenizer
  tok = models.load(meru_dir).tokenizer
  pairs = [("a &amp;amp; b", "a & b"), ("  A   Dog\n ", "a dog"), ("caf\u00c3\u00a9", "caf\u00e9"),
           ("fish &lt;3 &quot;chips&quot;", 'fish <3 "chips"')]
  messy, clean = zip(*pairs)
  assert tok(list(messy))["input_ids"] == tok(list(clean))["input_ids"]
  assert tok("a &amp; b")["input_ids"] == tok("a & b")["input_ids"] == [49406, 320, 261, 321,
                                                                        49407]
  clip_tokenizer.write_clip_vocab(str(tmp_path))
  plain = clip_tokenizer.load_tokenizer.__wrapped__(str(tmp_path))
  assert plain("a & b")["input_ids"] == tok("a & b")["input_ids"]  # the same BPE
  assert plain("a &amp; b")["input_ids"] != tok("a &amp; b")["input_ids"]


def test_meru_towers_equal_the_pytorch_twin(meru_dir):
  model = models.load(meru_dir)
  assert model.family.name == "meru" and isinstance(model.geometry, lorentz.Lorentz)
  state = torch.load(os.path.join(meru_dir, random_init.FILE), weights_only=True)["model"]
  twin = meru_twin.twin_of(state, model.config)
  rng = np.random.default_rng(3)
  size = model.config.vision.image_size
  pixels = rng.uniform(size=(3, size, size, 3)).astype(np.float32)
  tok = model.tokenizer
  texts = ["", "a photo of a dog", "two men riding horses on a beach at sunset " * 9]
  ids = [tok(t, truncation=True, max_length=77)["input_ids"] for t in texts]
  assert ids[0] == [49406, 49407] and len(ids[2]) == 77 and ids[2][-1] == 49407
  padded = np.zeros((3, 77), np.int32)  # MERU pads with 0
  for i, t in enumerate(ids):
    padded[i, :len(t)] = t
  with torch.no_grad():
    want_image = twin.encode_image(torch.from_numpy(pixels.transpose(0, 3, 1, 2)).double())
    want_text = twin.encode_text(torch.from_numpy(padded).long())
  encoders = model.encoders()
  got_image = np.asarray(jax.jit(encoders.image)(model.params, pixels))
  got_text = np.asarray(jax.jit(encoders.text)(model.params, padded))
  for got, want in ((got_image, want_image.numpy()), (got_text, want_text.numpy())):
    assert np.abs(np.corrcoef(want)[np.triu_indices(3, 1)]).max() < 0.99  # signal
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  # Lifted onto the hyperboloid with the stored curvature, as the float64 formula does.
  c = float(np.exp(state["curv"].double().numpy()))
  np.testing.assert_allclose(np.asarray(model.geometry.lift(got_text)),
                             meru_twin.exp_map0_64(want_text.numpy(), c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reference", ["twin", "timm"])
@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_image_tower_parity_at_the_release_shapes(tmp_path, size, reference):
  """The real widths and heads of ViT-S/B/L (S: 12 heads, not timm's 6) at 224 px; the
  depth cut to 2 layers (the per-layer shapes are the real ones; 2 CPU cores); against the
  twin written from the spec and against timm's VisionTransformer itself (where timm
  imports: not beside the CPU torch of CI; `bash launch/reference_parity.sh` runs it)."""
  if reference == "timm":
    pytest.importorskip("timm")
  from hierre_jax.models.meru import modeling
  width, _, heads = modeling.VISION_SIZES[size]
  d = random_init.write_random_meru(str(tmp_path), dict(hidden_size=512, num_hidden_layers=1),
                                    dict(hidden_size=width, num_hidden_layers=2), 512)
  model = models.load(d)
  assert model.config.vision.num_heads == heads
  state = torch.load(os.path.join(d, random_init.FILE), weights_only=True)["model"]
  twin = {"twin": meru_twin.twin_of, "timm": meru_twin.timm_twin_of}[reference](
      state, model.config)
  pixels = np.random.default_rng(4).uniform(size=(2, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    want = twin.encode_image(torch.from_numpy(pixels.transpose(0, 3, 1, 2)).double()).numpy()
  got = np.asarray(jax.jit(model.encoders().image)(model.params, pixels))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_export_round_trip_is_bit_identical(meru_dir, tmp_path):
  model = models.load(meru_dir, scan_layers=True)
  out = model.export(str(tmp_path / "out"))
  before = torch.load(os.path.join(meru_dir, random_init.FILE), weights_only=True)["model"]
  after = torch.load(os.path.join(out, random_init.FILE), weights_only=True)["model"]
  assert set(after) == set(before)
  for key, value in before.items():
    assert torch.equal(after[key], value), key
  meru_twin.twin_of(after, model.config)  # loads strictly
  for over in (meru_dir, os.path.join(meru_dir, "sub")):  # never over or beside the source
    with pytest.raises(errors.UserError, match=r"(is|lies inside) the input model_dir="):
      model.export(over)
  file_model = models.load(os.path.join(out, random_init.FILE))  # a .pth given as the file
  with pytest.raises(errors.UserError, match=r"contains the input model_dir=.*meru.pth"):
    file_model.export(out)
  with pytest.raises(ValueError, match=r"a meru model has no Hugging Face format to export to"):
    model.export(str(tmp_path / "as_hf"), hf=True)
  assert not os.path.exists(tmp_path / "as_hf")


def test_clip_baseline_of_the_release_lives_on_the_sphere(tmp_path):
  from hierre_jax.geometry import sphere
  d = random_init.write_random_meru(str(tmp_path), random_init.TINY_TEXT,
                                    random_init.TINY_VISION, 64, hyperbolic=False)
  model = models.load(os.path.join(d, random_init.FILE))  # the file itself
  assert model.geometry is sphere.SPHERE and "curv" not in model.params
  feats, root = loading.embedder(d).texts(["a dog"])
  np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, rtol=1e-6)


def test_the_flat_control_reads_the_tangent_vectors_as_points_of_flat_space(meru_dir, tmp_path):
  """flat=True (the hyperbolic study's control): the same parameters as the hyperbolic
  checkpoint, its tangent vectors log_map0(x) taken as points of R^P; recorded in the
  sizes file, kept by a round trip, refused without a curvature."""
  from hierre_jax.geometry import flat
  d = random_init.write_random_meru(str(tmp_path / "flat"), random_init.TINY_TEXT,
                                    random_init.TINY_VISION, 64, seed=1, flat=True)
  model = models.load(d)
  assert model.geometry is flat.FLAT and model.config.flat
  texts = ["a dog", "an animal on grass", ""]
  hyperbolic = loading.embedder(meru_dir)
  tangent = hyperbolic.geometry.chart(hyperbolic.texts(texts)[0])
  feats, root = loading.embedder(d).texts(texts)  # root: the origin, as for the hyperboloid
  np.testing.assert_allclose(root, 0.0)
  np.testing.assert_allclose(feats, tangent, rtol=1e-4, atol=1e-5 * np.abs(tangent).max())
  np.testing.assert_allclose(np.asarray(model.geometry.radius(feats, root)),
                             np.linalg.norm(feats, axis=-1), rtol=1e-6)
  out = model.export(str(tmp_path / "again"))
  assert models.load(out).geometry is flat.FLAT
  with pytest.raises(errors.ConfigError, match="no curvature"):
    random_init.write_random_meru(str(tmp_path / "bad"), random_init.TINY_TEXT,
                                  random_init.TINY_VISION, 64, hyperbolic=False, flat=True)


def test_a_random_meru_keeps_its_geometry_sizes_and_pixel_statistics(meru_dir):
  """random:PATH of a MERU (evaluate's baseline row): fresh tower draws, MERU's initial
  scalars (so the hyperboloid's curvature 1), the stored pixel statistics kept."""
  model, random = loading.load(meru_dir), loading.load(loading.RANDOM + meru_dir)
  assert random.geometry.name == "lorentz" and random.config == model.config
  assert jax.tree.structure(random.params) == jax.tree.structure(model.params)
  assert not np.array_equal(random.params["textual_proj"]["kernel"],
                            model.params["textual_proj"]["kernel"])
  for k in ("pixel_mean", "pixel_std"):
    np.testing.assert_array_equal(random.params[k], model.params[k])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_pth_loads_as_its_float32_values(meru_dir, tmp_path, dtype):
  """A .pth saved in half precision (model.half() before torch.save) reads as float32 with
  exactly the stored values."""
  import ml_dtypes
  pth = os.path.join(meru_dir, random_init.FILE)
  state = torch.load(pth, weights_only=True)["model"]
  half = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
          for k, v in state.items()}
  shutil.copy(os.path.join(meru_dir, checkpoint.SIZES_FILE), tmp_path)
  torch.save({"model": half}, str(tmp_path / random_init.FILE))
  np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
  full, loaded = models.load(meru_dir), models.load(str(tmp_path))
  for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(full.params)):
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.asarray(b).astype(np_dtype).astype(np.float32))


def test_flat_geometry_against_hand_computed_values():
  from hierre_jax.geometry import flat
  g, r = flat.FLAT, np.zeros(2, np.float32)
  x, y = np.array([3.0, 4.0], np.float32), np.array([3.0, 8.0], np.float32)
  assert float(g.radius(x, r)) == pytest.approx(5.0)  # not normalised: |x|
  assert float(g.exterior_angle(x, y, r)) == pytest.approx(np.arccos(0.8), abs=1e-6)
  assert float(g.pullback(x[None], y[None])) == pytest.approx(16.0 / 4)
  sims = g.similarity(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]))
  np.testing.assert_allclose(sims, [[-1.0, -9.0, -4.0]])
  np.testing.assert_allclose(g.mean(np.array([[1.0, 2.0], [3.0, 6.0]]), 0), [2.0, 4.0])


def test_meru_features_through_the_embedder_are_points_of_the_hyperboloid(meru_dir):
  embedder = loading.embedder(meru_dir)
  feats, root = embedder.texts(["a dog", "an animal"])
  ids = np.asarray([embedder.model.tokenizer("a dog")["input_ids"]], np.int32)
  tangent = np.asarray(embedder.model.encoders().text(embedder.model.params, ids))
  c = embedder.geometry.c
  np.testing.assert_allclose(feats[0], meru_twin.exp_map0_64(tangent[0], c), rtol=1e-4,
                             atol=1e-6)
  # Radius and angle through the geometry: hyperbolic, not Euclidean.
  r = np.asarray(embedder.geometry.radius(feats, root))
  np.testing.assert_allclose(r, meru_twin.dist64(feats.astype(np.float64), root, c), rtol=1e-3)


def save_pth(path, value):
  torch.save(value, path)
  return str(path)


def test_bad_checkpoints_are_named_in_one_line(meru_dir, tmp_path):
  state = torch.load(os.path.join(meru_dir, random_init.FILE), weights_only=True)["model"]
  shutil.copy(os.path.join(meru_dir, checkpoint.SIZES_FILE), tmp_path)  # the tiny heads
  cases = {
      "no model": ({"state_dict": state}, r"no \"model\" dict of weights"),
      "a list": ([1, 2], r"no \"model\" dict of weights \(.*found list\)"),
      "missing": ({"model": {k: v for k, v in state.items() if k != "visual.norm.bias"}},
                  r"missing 1 \['visual.norm.bias'\]"),
      "unexpected": ({"model": dict(state, extra=torch.zeros(2))}, r"unexpected 1 \['extra'\]"),
      "nan curvature": ({"model": dict(state, curv=torch.tensor(float("nan")))},
                        r"curvature exp\(curv\) = nan: must be finite and positive"),
      "zero curvature": ({"model": dict(state, curv=torch.tensor(float("-inf")))},
                         r"curvature exp\(curv\) = 0.0: must be finite and positive"),
      "not MERU": ({"model": {"weight": torch.zeros(2)}}, r"no visual.cls_token"),
  }
  for name, (value, message) in cases.items():
    path = save_pth(tmp_path / f"{name.replace(' ', '_')}.pth", value)
    with pytest.raises(errors.UserError, match=message):
      models.load(path)
  (tmp_path / "garbage.pth").write_bytes(b"not a pickle")
  with pytest.raises(errors.UserError, match=r"garbage.pth: not a torch checkpoint"):
    models.load(str(tmp_path / "garbage.pth"))


def test_heads_come_from_the_sizes_record_never_from_a_guess(tmp_path):
  """A .pth holds no attention heads: a 32-wide text tower of 2 heads is read with 2 (the
  sizes file our writer puts beside it), the release's widths by its table, any other width
  without that file refused in one line naming the file; a DDP `module.` prefix is stripped."""
  d = random_init.write_random_meru(
      str(tmp_path / "m"), dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2),
      dict(random_init.TINY_VISION, num_attention_heads=4), 16)
  model = models.load(d)
  assert (model.config.text.num_heads, model.config.vision.num_heads) == (2, 4)
  ids = np.asarray([model.tokenizer("a dog on grass")["input_ids"]], np.int32)
  want = np.asarray(model.encoders().text(model.params, ids))
  pth = os.path.join(d, random_init.FILE)
  state = torch.load(pth, weights_only=True)["model"]
  ddp = save_pth(tmp_path / "m" / "ddp.pth", {"model": {f"module.{k}": v
                                                        for k, v in state.items()}})
  os.remove(pth)
  again = models.load(ddp)
  np.testing.assert_array_equal(np.asarray(again.encoders().text(again.params, ids)), want)
  sizes = os.path.join(d, checkpoint.SIZES_FILE)
  record = json.load(open(sizes))
  json.dump(dict(record, text_width=64), open(sizes, "w"))
  with pytest.raises(errors.UserError, match=r"meru_config.json: text_width=64, but .*ddp.pth "
                     "holds 32: the sizes record is another checkpoint's"):
    models.load(ddp)
  os.remove(sizes)
  with pytest.raises(errors.UserError, match=r"ddp.pth: a vision tower of width 128 is not one "
                     r"of MERU's release shapes, .* write them to .*meru_config.json"):
    models.load(ddp)
  assert checkpoint.heads(512, "text", None, "x.pth") == 8  # the release's text tower
  assert checkpoint.heads(1024, "vision", None, "x.pth") == 16  # ViT-L


def test_reading_a_pth_without_torch_says_so(meru_dir, monkeypatch):
  import builtins
  real_import = builtins.__import__
  def no_torch(name, *args, **kwargs):
    if name == "torch":
      raise ImportError("no torch")
    return real_import(name, *args, **kwargs)
  monkeypatch.setattr(builtins, "__import__", no_torch)
  with pytest.raises(errors.UserError, match=r"reading a .pth checkpoint needs torch"):
    checkpoint.read_state_dict(os.path.join(meru_dir, random_init.FILE))


def test_retrieval_on_meru_ranks_by_hyperbolic_distance(meru_dir):
  from PIL import Image
  from hierre_jax.evaluators import retrieval
  embedder = loading.embedder(meru_dir)
  rng = np.random.default_rng(5)
  images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
  image_emb = embedder.images(images)
  text_emb, _ = embedder.texts([f"a photo of a {w}" for w in "cat dog car tree sky boat".split()])
  got = retrieval.recall_at_k(text_emb, np.arange(6), image_emb, ks=(1, 5),
                              geometry=embedder.geometry)
  d = meru_twin.dist64(text_emb[:, None].astype(np.float64), image_emb[None], embedder.geometry.c)
  rank_t2i = (d < d[np.arange(6), np.arange(6)][:, None]).sum(1)
  rank_i2t = (d < d[np.arange(6), np.arange(6)][None, :]).sum(0)
  for k in (1, 5):
    assert got[f"t2i_r@{k}"] == pytest.approx((rank_t2i < k).mean())
    assert got[f"i2t_r@{k}"] == pytest.approx((rank_i2t < k).mean())


def slow_stops(prototypes, images, c, logit_scale, threshold, children, root):
  """The probe's walk with loops, in float64: Lorentzian inner products with both
  children's prototypes, binary entropy of their softmax, descend while it is low."""
  stops = []
  for x in images:
    node = root
    while len(children[node]) == 2:
      s = inner64(x[None], prototypes[list(children[node])], c)[0]
      p = 1.0 / (1.0 + np.exp(-logit_scale * (s[0] - s[1])))
      entropy = -sum(q * np.log2(q) for q in (p, 1 - p) if q > 0)
      if entropy > threshold:
        break
      node = children[node][0] if p >= 0.5 else children[node][1]
    stops.append(node)
  return stops


def test_the_hierarchy_probe_on_meru_works_in_tangent_space(meru_dir):
  """Centroids are tangent-space means, the tree is Ward on their log_map0 charts and the
  walk compares images with node prototypes by Lorentzian inner products (float64 loops);
  only the sphere-built UMAP alignment is refused."""
  from scipy.cluster import hierarchy as scipy_hierarchy
  from hierre_jax.hierarchy import classes as classes_lib
  from hierre_jax.hierarchy import probe
  from hierre_jax.hierarchy import traversal
  from test_evaluators import random_pil_images
  embedder = loading.embedder(meru_dir)
  c = embedder.geometry.c
  names = ["dog", "cat", "car", "tree", "boat", "house"]
  templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
  class_set = classes_lib.ClassSet("planted", names, templates, groups={
      "kind": ["animal", "animal", "vehicle", "plant", "vehicle", "building"]})
  images, labels = random_pil_images(12, seed=3), np.arange(12) % 6
  thresholds = (0.0, 0.5, 0.9, 1.0)
  result, tree = probe.probe(embedder, class_set, "text", ["kind"], probe.Choices(
      thresholds=thresholds, explain_threshold=0.9), eval_images=(images, labels))
  assert result["geometry"] == "lorentz"
  feats = embedder.texts([t.format(n) for n in names for t in templates])[0].astype(np.float64)
  tangent = meru_twin.log_map0_64(feats, c).reshape(len(names), len(templates), -1).mean(1)
  centroids = meru_twin.exp_map0_64(tangent, c)
  merges = scipy_hierarchy.linkage(meru_twin.log_map0_64(centroids, c), "ward", "euclidean")
  np.testing.assert_allclose(result["tree"]["heights"][len(names):], merges[:, 2],
                             rtol=1e-4, atol=1e-5)
  assert sorted(map(sorted, tree.children[len(names):])) == sorted(
      sorted(int(i) for i in m[:2]) for m in merges)
  prototypes = np.zeros((len(tree.parent), centroids.shape[1]))
  prototypes[:len(names)] = centroids
  for node in tree.internal:
    prototypes[node] = meru_twin.exp_map0_64(
        meru_twin.log_map0_64(centroids[tree.leaves_under(node)], c).mean(0), c)
  image_feats = embedder.images(images).astype(np.float64)
  logit_scale = result["traversal"]["logit_scale"]
  walks = {t: slow_stops(prototypes, image_feats, c, logit_scale, t, tree.children, tree.root)
           for t in thresholds}
  assert [e["stop"] for e in result["traversal"]["explanations"]] == walks[0.9]
  for row in result["traversal"]["curve"]:
    assert row == {"threshold": row["threshold"], **traversal.traversal_metrics(
        tree, np.array(walks[row["threshold"]]), labels)}
  assert len({tuple(w) for w in walks.values()}) > 1  # the thresholds change the walks
  flat = np.argmax(inner64(image_feats, centroids, c), axis=1)
  assert result["traversal"]["flat_accuracy"] == pytest.approx(np.mean(flat == labels))
  with pytest.raises(errors.UserError, match="the UMAP-guided alignment \\(--align_betas\\) is "
                     "built for features on the sphere; this model's live in lorentz space"):
    probe.probe(embedder, class_set, "text", ["kind"], probe.Choices(align_betas=(0.5,)))


def full64(x, c):
  """Space parts [..., D] -> ambient points [..., D + 1] (time first)."""
  return np.concatenate([meru_twin.time64(x, c)[..., None], x], axis=-1)


def walk64(image, root, t, c):
  """The point a fraction t of the way from image to root: exp_x(t log_x(root)) with the
  hyperboloid's maps at x in ambient coordinates (float64), not the sinh weights the library
  uses."""
  x, y = full64(image, c), full64(root, c)
  lorentz_dot = lambda a, b: a[1:] @ b[1:] - a[0] * b[0]
  u = y + c * lorentz_dot(x, y) * x  # the tangent at x pointing at y, unscaled
  norm = np.sqrt(max(lorentz_dot(u, u), 0.0))
  if norm == 0.0:
    return image
  dist = np.arccosh(max(-c * lorentz_dot(x, y), 1.0)) / np.sqrt(c)
  s = np.sqrt(c) * t * dist
  return (np.cosh(s) * x + np.sinh(s) * u / (np.sqrt(c) * norm))[1:]


def slow_traversal(texts, image, c, steps=50, root_candidate=True, root=None):
  """MERU's traversal with loops, in float64 from the spec's formulas; to the origin as
  MERU walks (exp_map0 of shrinking tangents), to another root along the geodesic."""
  v = meru_twin.log_map0_64(image[None], c)[0]
  winners = []
  for t in np.linspace(1.0, 0.0, steps):
    if root is None:
      p = meru_twin.exp_map0_64(t * v[None], c)[0] if t > 0 else np.zeros_like(v)
    else:
      p = walk64(image, root, 1.0 - t, c)
    best, best_score = None, -np.inf  # None: no admissible candidate at this point
    for i, x in enumerate(texts):
      inside = meru_twin.oxy_angle64(x[None], p[None], c)[0] <= meru_twin.half_aperture64(
          x[None], c)[0] if np.linalg.norm(p) > 0 else False
      score = x @ p - meru_twin.time64(x, c) * meru_twin.time64(p, c)
      if inside and score > best_score:
        best, best_score = i, score
    r = np.zeros_like(p) if root is None else root
    if root_candidate and r @ p - meru_twin.time64(r, c) * meru_twin.time64(p, c) > best_score:
      best = len(texts)
    if best is not None:
      winners.append(best)
  distinct = [w for w in dict.fromkeys(winners) if w < len(texts)]
  return distinct[::-1]


def test_traversal_equals_a_loop_over_steps_and_candidates():
  from hierre_jax.evaluators import traversal
  rng = np.random.default_rng(6)
  c = 0.8
  # Texts near the origin (wide cones) and images far out, on a few directions, so that
  # cones hold some of the walk's points and the winners change along it.
  directions = rng.normal(size=(3, 8))
  texts = np.concatenate([meru_twin.exp_map0_64(
      (directions[k % 3] + 0.4 * rng.normal(size=(5, 8))) * r, c)
      for k, r in enumerate([0.1, 0.3, 0.6])])
  images = meru_twin.exp_map0_64((directions + 0.2 * rng.normal(size=(3, 8))) * 1.5, c)
  geometry = lorentz.Lorentz(c)
  got = traversal.traverse(geometry, texts.astype(np.float32), images.astype(np.float32))
  want = [slow_traversal(texts, image, c) for image in images]
  assert got == want and any(len(chain) > 1 for chain in want)
  no_root = traversal.traverse(geometry, texts.astype(np.float32), images.astype(np.float32),
                               root_candidate=False)
  assert no_root == [slow_traversal(texts, image, c, root_candidate=False) for image in images]
  # An image no cone holds at any step, without [ROOT]: an empty chain (not text 0).
  outside = meru_twin.exp_map0_64(-directions[:1] * 3.0, c)
  assert traversal.traverse(geometry, texts.astype(np.float32), outside.astype(np.float32),
                            root_candidate=False) == [slow_traversal(
                                texts, outside[0], c, root_candidate=False)]
  assert slow_traversal(texts, outside[0], c, root_candidate=False) == []
  dropped = traversal.traverse(geometry, texts.astype(np.float32), images.astype(np.float32),
                               drop_first=True)
  assert dropped == [chain[1:] for chain in got]
  # Walked to another root (RE's, the embedding of ""): along the geodesic, [ROOT] that point.
  root = meru_twin.exp_map0_64(directions[1:2] * 0.25, c)[0]
  to_root = traversal.traverse(geometry, texts.astype(np.float32), images.astype(np.float32),
                               root.astype(np.float32))
  assert to_root == [slow_traversal(texts, image, c, root=root) for image in images]
  assert to_root != got  # the walk's end matters


def test_the_geodesic_is_merus_walk_to_the_origin_and_the_exp_log_walk_elsewhere():
  rng = np.random.default_rng(9)
  c = 0.7
  x = meru_twin.exp_map0_64(rng.normal(size=(4, 6)), c)
  y = meru_twin.exp_map0_64(rng.normal(size=(4, 6)), c)
  t = np.array([0.0, 0.3, 0.8, 1.0])
  got = np.asarray(lorentz.geodesic(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                    jnp.asarray(t, jnp.float32), c))
  want = np.stack([walk64(a, b, f, c) for a, b, f in zip(x, y, t)])
  scale = np.abs(want).max()
  np.testing.assert_allclose(got, want, atol=1e-5 * scale)
  to_origin = np.asarray(lorentz.geodesic(jnp.asarray(x, jnp.float32), jnp.zeros(6),
                                          jnp.asarray(t, jnp.float32), c))
  want = np.stack([meru_twin.exp_map0_64((1 - f) * meru_twin.log_map0_64(a[None], c), c)[0]
                   if f < 1 else np.zeros(6) for a, f in zip(x, t)])  # (the twin's is NaN at 0)
  np.testing.assert_allclose(to_origin, want, atol=1e-5 * scale)
  same = np.asarray(lorentz.geodesic(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32),
                                     jnp.asarray(t, jnp.float32), c))
  np.testing.assert_allclose(same, x, rtol=1e-5)  # a point to itself: no NaN


def test_sphere_traversal_equals_a_loop_over_steps_and_candidates(tmp_path):
  """MERU's CLIP baselines: the walk from each image to a stored root vector on the sphere
  (points normalised, dot products, no cones, [ROOT] the root), against a float64 loop;
  root vector files read as .npy, .json and .pt, bad ones named."""
  from hierre_jax.evaluators import traversal
  rng = np.random.default_rng(8)
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  root = unit(rng.normal(size=8))
  directions = unit(rng.normal(size=(3, 8)))
  texts = unit(np.concatenate([a * root + (1 - a) * directions[k % 3]
                               + 0.05 * rng.normal(size=(4, 8))
                               for k, a in enumerate([0.8, 0.5, 0.2])]))
  images = unit(directions + 0.1 * rng.normal(size=(3, 8)))
  def slow(image):
    winners = []
    for f in np.linspace(1.0, 0.0, traversal.STEPS):
      p = unit(f * image + (1 - f) * root)
      scores = list(texts @ p) + [root @ p]
      winners.append(int(np.argmax(scores)))
    return [w for w in dict.fromkeys(winners) if w < len(texts)][::-1]
  got = traversal.traverse_sphere(root * 3.0, texts.astype(np.float32),
                                  images.astype(np.float32))  # the root normalised here
  assert got == [slow(image) for image in images] and any(len(c) > 1 for c in got)
  np.save(tmp_path / "r.npy", root)
  json.dump(root.tolist(), open(tmp_path / "r.json", "w"))
  torch.save(torch.tensor(root[None]), tmp_path / "r.pt")  # a [1, P] tensor
  for name in ("r.npy", "r.json", "r.pt"):
    np.testing.assert_allclose(traversal.read_root_vector(str(tmp_path / name)), root,
                               rtol=1e-6)
  (tmp_path / "bad.json").write_text('{"no": 1}')
  with pytest.raises(errors.UserError, match=r"bad.json: not a root vector"):
    traversal.read_root_vector(str(tmp_path / "bad.json"))
  json.dump([[1.0, 2.0], [3.0, 4.0]], open(tmp_path / "matrix.json", "w"))
  with pytest.raises(errors.UserError, match=r"matrix.json: a root vector must be one"):
    traversal.read_root_vector(str(tmp_path / "matrix.json"))


def test_a_clip_baseline_of_the_release_is_traversed_to_a_given_root(tmp_path):
  """evaluate --traversal_root on a MERU CLIP baseline (the sphere): the traversal's P and R
  beside RE's levels, the walk recorded; a root of another width refused in one line."""
  from hierre_jax.evaluators import hierarcaps
  from conftest import shared_file
  from runs import small_eval_files
  d = random_init.write_random_meru(str(tmp_path / "baseline"), random_init.TINY_TEXT,
                                    random_init.TINY_VISION, 64, hyperbolic=False)
  test_csv, _ = small_eval_files(str(tmp_path), num_rows=12)
  images_dir = os.path.dirname(shared_file("test_images/COCO_val2014_000000000139.jpg"))
  embedder = loading.embedder(d)
  root = embedder.texts(["something"])[0][0]
  got = hierarcaps.evaluate_hierarcaps(embedder, test_csv, images_dir, root_vector=root)
  assert got["traversal"]["walk_to"] == "the given root vector, on the sphere"
  assert 0 <= got["traversal"]["precision"] <= 1 and 0 <= got["traversal"]["recall"] <= 1
  assert "traversal" not in hierarcaps.evaluate_hierarcaps(embedder, test_csv, images_dir)
  with pytest.raises(errors.UserError, match=r"a traversal root of 3 numbers: the walk to a "
                     r"stored root runs on the sphere in the model's 64 dimensions"):
    hierarcaps.evaluate_hierarcaps(embedder, test_csv, images_dir,
                                   root_vector=np.ones(3, np.float32))


def test_chain_metrics_count_as_the_levels_do():
  from hierre_jax.evaluators import traversal
  from hierre_jax.radial import hierarchical_retrieval as hr
  gt = np.array([[[0, 1, 2, 3], [0, 1, 4, 5]], [[6, 7, 8, 9], [-1, -1, -1, -1]]])
  chains = [[0, 4, 9], [6, 7, 8, 9]]
  precision, recall = traversal.chain_metrics(chains, gt)
  np.testing.assert_allclose(precision, [2 / 3, 1.0])
  np.testing.assert_allclose(recall, [0.5, 1.0])  # tiers 0 and 2 of image 0
  # The levels' count on the same chains written as level predictions.
  levels = np.array([[0, 0, 4, 9], [6, 7, 8, 9]])
  want_p, want_r = hr.precision_recall(levels, gt)
  np.testing.assert_allclose(precision, want_p)
  np.testing.assert_allclose(recall, want_r)


def test_hierarcaps_on_meru_reports_the_traversal_and_the_root(meru_dir, tmp_path):
  from hierre_jax.data import hierarcaps_csv
  from hierre_jax.data import indexing
  from hierre_jax.evaluators import hierarcaps
  from hierre_jax.evaluators import traversal
  from hierre_jax.radial import hierarchical_retrieval as hr
  import runs
  test_csv, _ = runs.small_eval_files(str(tmp_path), num_rows=6)
  images_dir = runs.shared_file("test_images")
  embedder = loading.embedder(meru_dir)
  assert embedder.root_source == "origin" and not embedder.root.any()
  got = hierarcaps.evaluate_hierarcaps(embedder, test_csv, images_dir)
  # The traversal's chains from the loop over steps and candidates, counted by tiers.
  data = hierarcaps_csv.read_hierarchies(test_csv)
  candidates, row_tier_index = indexing.index_rows(data.positives)
  images, rows_table = hr.group_rows_by_image(data.images)
  texts = embedder.texts(candidates)[0].astype(np.float64)
  image_emb = embedder.images([os.path.join(images_dir, n) for n in images]).astype(np.float64)
  chains = [slow_traversal(texts, image, embedder.geometry.c) for image in image_emb]
  precision, recall = traversal.chain_metrics(
      chains, hr.ground_truth_indices(rows_table, row_tier_index))
  assert got["traversal"]["precision"] == pytest.approx(precision.mean())
  assert got["traversal"]["recall"] == pytest.approx(recall.mean())
  assert got["traversal"]["root_candidate"] is True and got["traversal"]["steps"] == 50
  assert got["traversal"]["walk_to"] == "the origin"
  # RE's mapping: the root is the lifted embedding of "" (`--hyperbolic_root=empty_string`),
  # and the traversal walks to it.
  re_root = loading.embedder(meru_dir, hyperbolic_root="empty_string")
  assert re_root.root_source == "empty_string"
  root = re_root.texts([])[1]
  np.testing.assert_allclose(root, re_root.texts([""])[0][0], atol=1e-5)
  assert np.abs(root).max() > 0
  got = hierarcaps.evaluate_hierarcaps(re_root, test_csv, images_dir)
  assert got["traversal"]["walk_to"] == "the embedding of the empty string"
  chains = [slow_traversal(texts, image, embedder.geometry.c, root=root.astype(np.float64))
            for image in image_emb]
  precision, recall = traversal.chain_metrics(
      chains, hr.ground_truth_indices(rows_table, row_tier_index))
  assert got["traversal"]["precision"] == pytest.approx(precision.mean())
  assert got["traversal"]["recall"] == pytest.approx(recall.mean())


def test_meru_demo_trains_the_text_tower_in_hyperbolic_space_and_exports_a_pth(tmp_path):
  from configs import meru_demo
  from hierre_jax import train
  config = meru_demo.get_config()
  config.update(workdir=str(tmp_path), total_steps=3, log_every=1, checkpoint_every=3,
                train_csv=os.path.join(os.path.dirname(__file__), "..", "hierre_jax", "assets",
                                       "hierarcaps_sample.csv"), lr=1e-3)
  config.random_init.text.update(hidden_size=64)
  config.eval.test_csv = ""
  state = train.train_and_export(config)
  final = jax.device_get(state.params)
  start = models.load(str(tmp_path / "random_init")).params
  exported = models.load(str(tmp_path / "export"))
  assert exported.family.name == "meru" and exported.model_dir.endswith("export")
  np.testing.assert_array_equal(loading.load(str(tmp_path / "export")).params["root"],
                                np.zeros(64, np.float32))  # the origin travels with it
  for key in ("visual", "visual_proj", "curv", "visual_alpha", "textual_alpha", "pixel_mean"):
    jax.tree.map(np.testing.assert_array_equal, final[key], start[key])
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool((a != b).any()),
                                       final["textual"], start["textual"]))
  assert all(moved)
  jax.tree.map(np.testing.assert_array_equal, exported.params,
               {k: v for k, v in final.items() if k != "root"})
  state_dict = torch.load(str(tmp_path / "export" / random_init.FILE), weights_only=True)
  meru_twin.twin_of(state_dict["model"], exported.config)  # loads strictly
  embedder = loading.embedder(str(tmp_path))  # the train workdir
  assert embedder.checkpoint_step == 3 and embedder.root_source == "model"


def inner64(x, y, c):
  return x @ y.T - meru_twin.time64(x, c)[:, None] * meru_twin.time64(y, c)[None, :]


def test_the_suites_evaluators_score_meru_hyperbolically(meru_dir):
  """HyperLex, zero-shot and BREEDS on MERU against float64 loops of the spec's formulas:
  angles at the origin (MERU's mapping), Lorentzian inner products, tangent-space prompt
  means."""
  from scipy import stats
  from hierre_jax.evaluators import breeds
  from hierre_jax.evaluators import hyperlex
  from hierre_jax.evaluators import prompts
  from hierre_jax.evaluators import zero_shot
  from test_evaluators import random_pil_images, shared_path
  embedder = loading.embedder(meru_dir)
  c = embedder.geometry.c
  # HyperLex: -ext(general, specific) = -oxy_angle at the general word's point.
  path = shared_path("hyperlex", "hyperlex-all.txt")
  got = hyperlex.HyperLex(path).run(embedder)
  rows = [line.split() for line in open(path).read().splitlines()[1:]]
  words = sorted({w for r in rows for w in r[:2]})
  feats, _ = embedder.texts([f"a picture of a {w}" for w in words])
  emb = dict(zip(words, feats.astype(np.float64)))
  scores = [-meru_twin.oxy_angle64(emb[r[1]][None], emb[r[0]][None], c)[0] for r in rows]
  assert got["rho_all"] == pytest.approx(
      stats.spearmanr(scores, [float(r[4]) for r in rows]).statistic, abs=1e-3)
  # Zero-shot: the prompt ensemble is the mean in tangent space, scored by <x, y>_L.
  classes, templates = ["dog", "cat", "car", "tree", "boat", "house"], ["a photo of a {}.", "{}"]
  images, labels = random_pil_images(12, seed=2), np.arange(12) % 6
  got = zero_shot.ZeroShot("planted", classes, templates, images, labels).run(embedder)
  labels_64 = np.stack([meru_twin.exp_map0_64(meru_twin.log_map0_64(embedder.texts(
      [t.format(name) for t in templates])[0].astype(np.float64), c).mean(0), c)
                        for name in classes])
  np.testing.assert_allclose(prompts.ensemble(embedder, classes, templates), labels_64, atol=1e-5)
  sims = inner64(embedder.images(images).astype(np.float64), labels_64, c)
  ranks = (sims > sims[np.arange(12), labels][:, None]).sum(1)
  assert (got["top1"], got["top5"]) == pytest.approx(((ranks < 1).mean(), (ranks < 5).mean()))
  # BREEDS: pairs ordered by d(O, x), scored s(x) + s(y) - alpha ext(x, y).
  hierarchy = breeds.Hierarchy(shared_path("breeds", "breeds_hierarchies_full.json"), "living17")
  label_emb = prompts.ensemble(embedder, hierarchy.labels, templates)
  root = embedder.texts([])[1]
  image_emb = embedder.images(random_pil_images(6))
  targets = np.array(list(hierarchy.pair_of_wnid.values())[:6])
  alphas = (0.0, 0.7)
  ranks = breeds.pair_ranks(image_emb, label_emb, root, targets, alphas,
                            geometry=embedder.geometry)
  x64 = label_emb.astype(np.float64)
  d = meru_twin.dist64(x64, np.zeros_like(x64), c)
  pairs = [(x, y) for x in range(len(x64)) for y in range(len(x64)) if d[x] < d[y]]
  ext = meru_twin.oxy_angle64(x64[[x for x, _ in pairs]], x64[[y for _, y in pairs]], c)
  s = inner64(image_emb.astype(np.float64), x64, c)
  for a, alpha in enumerate(alphas):
    for m in range(len(image_emb)):
      if tuple(targets[m]) not in pairs:  # not ordered by radius: a miss at any k
        assert ranks[a, m] == len(pairs)
        continue
      pair_scores = np.array([s[m, x] + s[m, y] for x, y in pairs]) - alpha * ext
      target = pair_scores[pairs.index(tuple(targets[m]))]
      # float32 against float64: pairs within 1e-4 of the target's score may swap.
      assert (pair_scores > target + 1e-4).sum() <= ranks[a, m] <= (
          pair_scores >= target - 1e-4).sum() - 1, (alpha, m)


def test_multiple_choice_scores_meru_by_the_lorentzian_inner_product(meru_dir):
  from hierre_jax.evaluators import multiple_choice
  from test_evaluators import random_pil_images
  embedder = loading.embedder(meru_dir)
  images = random_pil_images(3, seed=4)
  captions = [("a dog", "a cat"), ("a cat", "a car"), ("a car", "a dog")]
  got = multiple_choice.GlobalCosine(embedder).score(images, captions)
  image_feats = embedder.images(images).astype(np.float64)
  want = np.stack([inner64(image_feats[n][None], embedder.texts(list(row))[0].astype(
      np.float64), embedder.geometry.c)[0] for n, row in enumerate(captions)])
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_meru_retrieval_squashes_images_where_classification_crops(meru_dir):
  from PIL import Image
  model = models.load(meru_dir)
  wide = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 96, 3), np.uint8))
  size = model.config.vision.image_size
  squashed = np.asarray(wide.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
  np.testing.assert_allclose(model.preprocessing_for("retrieval").preprocess(wide), squashed,
                             atol=1e-6)
  cropped = np.asarray(wide.resize((2 * size, size), Image.Resampling.BICUBIC), np.float32) / 255
  np.testing.assert_allclose(model.preprocessing_for("classification").preprocess(wide),
                             cropped[:, size // 2:size // 2 + size], atol=1e-6)
  embedder = loading.embedder(meru_dir)
  by_use = [embedder.images([wide], use=use) for use in ("classification", "retrieval")]
  assert np.abs(by_use[0] - by_use[1]).max() > 1e-3
  clip = models.load(random_init.write_random_meru(
      os.path.join(os.path.dirname(meru_dir), "clip_baseline"), random_init.TINY_TEXT,
      random_init.TINY_VISION, 64, hyperbolic=False))
  assert repr(clip.preprocessing_for("retrieval")) != repr(clip.preprocessing)


def test_qualitative_chains_on_meru_by_geodesic_levels_and_by_traversal(meru_dir, tmp_path):
  from absl.testing import flagsaver
  from hierre_jax import evaluate
  from hierre_jax.data import hierarcaps_csv
  from hierre_jax.data import indexing
  from hierre_jax.evaluators import traversal
  import runs
  test_csv, _ = runs.small_eval_files(str(tmp_path), num_rows=12)
  data_dir = os.path.dirname(os.path.dirname(runs.shared_file("hierarcaps_test.csv")))
  names = sorted(set(hierarcaps_csv.read_hierarchies(test_csv).images))[:3]
  embedder = loading.embedder(meru_dir)
  candidates = indexing.distinct(
      t for row in hierarcaps_csv.read_hierarchies(test_csv).positives for t in row)
  text, root = embedder.texts(candidates)
  images = embedder.images([os.path.join(data_dir, "hierarcaps", "test_images", n)
                            for n in names])
  c = embedder.geometry.c
  radius = np.asarray(embedder.geometry.radius(text, root))
  levels = np.linspace(np.float64(radius.min()), np.float64(radius.max()), 50).astype(np.float32)
  want = {}
  for name, image in zip(names, images.astype(np.float64)):
    sims = inner64(text.astype(np.float64), image[None], c)[:, 0]
    chain = []
    for t in levels:
      best = max((i for i in range(len(text)) if radius[i] <= t), key=lambda i: (sims[i], -i))
      if not chain or chain[-1] != best:
        chain.append(best)
    want[name] = [candidates[i] for i in chain]
  for procedure in ("levels", "traversal"):
    out = tmp_path / procedure
    with flagsaver.flagsaver(model=[meru_dir], data_dir=data_dir, mode="qualitative",
                             images=names, candidates_csv=test_csv, output_dir=str(out),
                             qualitative_chains=procedure):
      evaluate.FLAGS.mark_as_parsed()
      evaluate.main([])
    chains = json.load(open(out / "qualitative.json"))
    assert "<img" in (out / "qualitative.html").read_text()
    if procedure == "levels":
      assert chains == want
    else:
      assert chains == {n: [candidates[i] for i in chain] for n, chain in zip(
          names, traversal.traverse(embedder.geometry, text, images))}
  with flagsaver.flagsaver(model=[meru_dir], data_dir=data_dir, mode="qualitative",
                           images=names, candidates_csv=test_csv, output_dir=str(tmp_path / "x"),
                           qualitative_radius="cosine"):
    with pytest.raises(errors.UserError, match="radius 'cosine': this model's lorentz space "
                       "has geodesic"):
      evaluate.main([])


def test_random_init_options_are_the_familys(tmp_path):
  import ml_collections
  from hierre_jax.trainer import model_dir
  config = ml_collections.ConfigDict(dict(workdir=str(tmp_path), random_init=dict(
      family="meru", text=random_init.TINY_TEXT, vision=random_init.TINY_VISION,
      projection_dim=64, seed=0, options=dict(hyperbolic=False))))
  baseline = models.load(model_dir.prepare_model_dir(config, is_main=True))
  assert baseline.geometry.name == "sphere" and "curv" not in baseline.params
  config.random_init.options = dict(curvature=2.0)
  with pytest.raises(errors.UserError, match=r"config.random_init.options.curvature: not an "
                     r"option of a random meru checkpoint \(hyperbolic, flat\)"):
    model_dir.prepare_model_dir(config, is_main=True)
  config.random_init.family = "clip"
  config.random_init.options = dict(hyperbolic=False)
  with pytest.raises(errors.UserError, match=r"options.hyperbolic: not an option of a random "
                     r"clip checkpoint \(it takes none\)"):
    model_dir.prepare_model_dir(config, is_main=True)
  config.random_init.family = "blip"
  with pytest.raises(errors.UserError, match=r"config.random_init.family='blip': not a family"):
    model_dir.prepare_model_dir(config, is_main=True)
