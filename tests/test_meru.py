"""MERU (FAMILIES_SPEC section 1): the Lorentz geometry against float64 formulas and
geoopt, the towers against a PyTorch twin written from the spec (`meru_twin`), the
release's .pth layout both ways, and bad checkpoints named in one line."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierre_jax import errors
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
  # The spec's clamp: past s = sqrt(c)|v| = asinh(2^15), sinh(s) / s is taken at the
  # bound (finite, growing only linearly with |v|).
  far = np.asarray(lorentz.exp_map0(f32(direction[:1] * 50 / np.sqrt(c)), c))
  np.testing.assert_allclose(np.linalg.norm(far) * np.sqrt(c), 2.0 ** 15 * 50 / np.arcsinh(2.0 ** 15),
                             rtol=1e-5)
  # ... and not when it is another point (a wrong root would pass otherwise).
  root = f32(meru_twin.exp_map0_64(rng.normal(size=16) * 0.5, c))
  moved = np.asarray(lorentz.law_of_cosines_angle(f32(x), f32(y), root, c))
  assert np.abs(moved - want).max() > 0.1


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


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_image_tower_parity_at_the_release_shapes(tmp_path, size):
  """The real widths and heads of ViT-S/B/L (S: 12 heads, not timm's 6) at 224 px; the
  depth cut to 2 layers (the per-layer shapes are the real ones; 2 CPU cores)."""
  from hierre_jax.models.meru import modeling
  width, _, heads = modeling.VISION_SIZES[size]
  d = random_init.write_random_meru(str(tmp_path), dict(hidden_size=512, num_hidden_layers=1),
                                    dict(hidden_size=width, num_hidden_layers=2), 512)
  model = models.load(d)
  assert model.config.vision.num_heads == heads
  state = torch.load(os.path.join(d, random_init.FILE), weights_only=True)["model"]
  twin = meru_twin.twin_of(state, model.config)
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


def test_clip_baseline_of_the_release_lives_on_the_sphere(tmp_path):
  from hierre_jax.geometry import sphere
  d = random_init.write_random_meru(str(tmp_path), random_init.TINY_TEXT,
                                    random_init.TINY_VISION, 64, hyperbolic=False)
  model = models.load(os.path.join(d, random_init.FILE))  # the file itself
  assert model.geometry is sphere.SPHERE and "curv" not in model.params
  feats, root = loading.embedder(d).texts(["a dog"])
  np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, rtol=1e-6)


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


def test_what_is_not_built_for_hyperbolic_features_is_refused(meru_dir):
  from hierre_jax.hierarchy import probe
  with pytest.raises(errors.UserError, match="the centroid-hierarchy probe is built for "
                     "features on the sphere; this model's live in lorentz space"):
    probe.probe(loading.embedder(meru_dir), None, "text", [])


def slow_traversal(texts, image, c, steps=50, root_candidate=True):
  """MERU's traversal with loops, in float64 from the spec's formulas."""
  v = meru_twin.log_map0_64(image[None], c)[0]
  winners = []
  for t in np.linspace(1.0, 0.0, steps):
    p = meru_twin.exp_map0_64(t * v[None], c)[0] if t > 0 else np.zeros_like(v)
    best, best_score = None, -np.inf
    for i, x in enumerate(texts):
      inside = meru_twin.oxy_angle64(x[None], p[None], c)[0] <= meru_twin.half_aperture64(
          x[None], c)[0] if np.linalg.norm(p) > 0 else False
      score = (x @ p - meru_twin.time64(x, c) * meru_twin.time64(p, c)) if inside else -1e12
      if score > best_score:
        best, best_score = i, score
    if root_candidate and -meru_twin.time64(p, c) / np.sqrt(c) > best_score:
      best = len(texts)
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
  dropped = traversal.traverse(geometry, texts.astype(np.float32), images.astype(np.float32),
                               drop_first=True)
  assert dropped == [chain[1:] for chain in got]


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
  # RE's mapping: the root is the lifted embedding of "" (`--hyperbolic_root=empty_string`).
  re_root = loading.embedder(meru_dir, hyperbolic_root="empty_string")
  assert re_root.root_source == "empty_string"
  np.testing.assert_allclose(re_root.texts([])[1], re_root.texts([""])[0][0], atol=1e-5)
  assert np.abs(re_root.texts([])[1]).max() > 0


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
  exported = models.load(str(tmp_path / "hf_export"))
  assert exported.family.name == "meru" and exported.model_dir.endswith("hf_export")
  np.testing.assert_array_equal(loading.load(str(tmp_path / "hf_export")).params["root"],
                                np.zeros(64, np.float32))  # the origin travels with it
  for key in ("visual", "visual_proj", "curv", "visual_alpha", "textual_alpha", "pixel_mean"):
    jax.tree.map(np.testing.assert_array_equal, final[key], start[key])
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool((a != b).any()),
                                       final["textual"], start["textual"]))
  assert all(moved)
  jax.tree.map(np.testing.assert_array_equal, exported.params,
               {k: v for k, v in final.items() if k != "root"})
  state_dict = torch.load(str(tmp_path / "hf_export" / random_init.FILE), weights_only=True)
  meru_twin.twin_of(state_dict["model"], exported.config)  # loads strictly
  embedder = loading.embedder(str(tmp_path))  # the train workdir
  assert embedder.checkpoint_step == 3 and embedder.root_source == "model"
