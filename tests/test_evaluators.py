"""Benchmark evaluators against obviously-correct slow implementations on the real files,
with a tiny random model of each family."""
import os

import numpy as np
import pytest

import tolerances
from family_matrix import needs
from hierre_jax import loading
from hierre_jax.geometry import sphere
from hierre_jax.common import errors
from hierre_jax.evaluators import hyperlex
from hierre_jax.evaluators import tables
from hierre_jax.evaluators import uncertainty

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


def shared_path(*parts):
  path = os.path.join(SHARED, *parts)
  if not os.path.exists(path):
    pytest.skip(f"{path} not present")
  return path


@pytest.fixture(scope="module")
def tiny_embedder(family_dir):
  """The Embedder of a tiny random model of each family in turn."""
  return loading.embedder(family_dir, text_batch_size=512)


def ext_float64(x, y, root):
  """Exterior angle of SPEC section 2 for one pair, in float64 numpy."""
  u, w = x - root, y - x
  return np.arccos(np.clip(u @ w / (np.linalg.norm(u) * np.linalg.norm(w)), -1, 1))


def test_hyperlex_equals_a_loop_over_the_real_pairs(tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  scipy_stats = pytest.importorskip("scipy.stats")
  path = shared_path("hyperlex", "hyperlex-all.txt")
  evaluator = hyperlex.HyperLex(path)
  got = evaluator.run(tiny_embedder)
  assert (got["num_pairs"], got["num_noun_pairs"]) == (2616, 2163)

  rows = [line.split() for line in open(path).read().splitlines()[1:]]
  words = sorted({w for r in rows for w in r[:2]})
  feats, root = tiny_embedder.texts([f"a picture of a {w}" for w in words])
  emb = {w: f.astype(np.float64) for w, f in zip(words, feats)}
  scores = [-ext_float64(emb[r[1]], emb[r[0]], root.astype(np.float64)) for r in rows]
  human = [float(r[4]) for r in rows]
  nouns = [i for i, r in enumerate(rows) if r[2] == "N"]
  want_all = scipy_stats.spearmanr(scores, human).statistic
  want_nouns = scipy_stats.spearmanr([scores[i] for i in nouns], [human[i] for i in nouns]).statistic
  assert got["rho_all"] == pytest.approx(want_all, abs=1e-4)
  assert got["rho_nouns"] == pytest.approx(want_nouns, abs=1e-4)
  # the items recompute the metric; the length baseline: specific minus general characters
  assert uncertainty.value(got["items"]["rho_all"]) == pytest.approx(got["rho_all"], abs=1e-12)
  length = [len(r[0]) - len(r[1]) for r in rows]
  assert got["baseline/length/rho_all"] == pytest.approx(
      scipy_stats.spearmanr(length, human).statistic, abs=1e-12)
  nouns_file = hyperlex.read_pairs(shared_path("hyperlex", "nouns-verbs", "hyperlex-nouns.txt"))
  assert len(nouns_file.score) == 2163 and set(nouns_file.pos) == {"N"}


def test_hyperlex_bad_lines_name_file_and_line(tmp_path):
  path = tmp_path / "h.txt"
  path.write_text("WORD1 WORD2 POS TYPE AVG_SCORE AVG_SCORE_0_10 STD\n"
                  "dog animal N hyp-1 5.5 9.1 0.5\ncat animal N\n")
  with pytest.raises(errors.DataError, match=r"h.txt: line 3: expected at least 5 "
                     r"columns WORD1 WORD2 POS TYPE AVG_SCORE, got 3"):
    hyperlex.read_pairs(str(path))
  path.write_text("WORD1 WORD2 POS TYPE AVG_SCORE\ndog animal N hyp-1 high\n")
  with pytest.raises(errors.DataError, match=r"line 2: AVG_SCORE 'high' is not a number"):
    hyperlex.read_pairs(str(path))
  path.write_text("a b c\n")
  with pytest.raises(errors.DataError, match=r"h.txt: line 1: expected a header"):
    hyperlex.read_pairs(str(path))


def brute_force_recalls(text_emb, caption_image, image_emb, ks=(1, 5, 10)):
  """Per caption / per image: a full stable sort of the similarities, then the target's place."""
  t2i = [list(np.argsort(-(image_emb @ t), kind="stable")).index(i)
         for t, i in zip(text_emb, caption_image)]
  i2t = []
  for m, v in enumerate(image_emb):
    order = list(np.argsort(-(text_emb @ v), kind="stable"))
    i2t.append(min(order.index(c) for c in np.nonzero(caption_image == m)[0]))
  return {**{f"t2i_r@{k}": np.mean(np.array(t2i) < k) for k in ks},
          **{f"i2t_r@{k}": np.mean(np.array(i2t) < k) for k in ks}}


def test_coco_retrieval_on_the_real_1k_subset_equals_brute_force(tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  from hierre_jax.evaluators import retrieval
  pairs = retrieval.coco_pairs(shared_path("coco", "captions_val2017.json"))
  images_dir = shared_path("hierarcaps", "test_images")
  with pytest.raises(errors.DataError, match=r"test_images: 4000 of the 5000 images of "
                     r"the annotations are missing, e.g. '\d{12}'; pass allow_missing_images"):
    retrieval.Retrieval("coco", pairs, images_dir)
  evaluator = retrieval.Retrieval("coco", pairs, images_dir, allow_missing_images=True)
  assert len(evaluator.images) == 1000 and len(evaluator.captions) >= 5000
  got = evaluator.run(tiny_embedder)
  assert (got["num_images"], got["num_annotated_images"]) == (1000, 5000)
  text_emb, _ = tiny_embedder.texts(evaluator.captions)
  image_emb = tiny_embedder.images(evaluator.paths)
  want = brute_force_recalls(text_emb, evaluator.caption_image, image_emb)
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=1e-12), key
  assert 0 < got["t2i_r@10"] < 1  # a random tower is far from perfect, but not at zero


@pytest.mark.parametrize("present", [2, 0])
def test_near_empty_image_set_is_refused_before_anything_is_embedded(tmp_path, present):
  from hierre_jax.evaluators import retrieval
  pairs = retrieval.coco_pairs(shared_path("coco", "captions_val2017.json"))
  images_dir = shared_path("hierarcaps", "test_images")
  for name in sorted(os.listdir(images_dir))[:present]:
    os.symlink(os.path.join(images_dir, name), tmp_path / name)
  with pytest.raises(errors.DataError, match=f"only {present} of the 5000 images of the "
                     "annotations are present, fewer than the minimum of 100"):
    retrieval.Retrieval("coco", pairs, str(tmp_path), allow_missing_images=True)
  counts = {"model": "m", "coco/t2i_r@1": 0.8, "coco/num_images": 2,
            "coco/num_annotated_images": 5000}
  assert "| m | 0.800 (n=2 of 5000) |" in tables.markdown_table([counts])


def test_retrieval_ranks_planted_embeddings_and_ties():
  from hierre_jax.evaluators import retrieval
  images = np.eye(3, dtype=np.float32)
  # Captions 0, 1 of image 0 (one exact, one nearer image 2), caption 2 of image 1 tied
  # between images 0 and 1 (the lower index ranks first), caption 3 of image 2 exact.
  texts = np.array([[1, 0, 0], [0.6, 0, 0.8], [0.7, 0.7, 0], [0, 0, 1]], np.float32)
  got = retrieval.recall_at_k(texts, np.array([0, 0, 1, 2]), images, ks=(1, 2), chunk=2)
  assert (got["t2i_r@1"], got["t2i_r@2"]) == (0.5, 1.0)
  # Image 0: caption 0 first; image 1: caption 2 is 1st (0.7, only it has y); image 2: caption
  # 3 first.
  assert (got["i2t_r@1"], got["i2t_r@2"]) == (1.0, 1.0)
  assert got["items"]["t2i_r@1"].arrays[0].tolist() == [1, 0, 0, 1]  # per caption
  assert got["items"]["i2t_r@1"].arrays[0].tolist() == [1, 1, 1]  # per image


def test_retrieval_annotation_files_name_what_is_missing(tmp_path):
  import json
  from hierre_jax.evaluators import retrieval
  (tmp_path / "imgs").mkdir()
  (tmp_path / "imgs" / "1.jpg").write_bytes(b"")
  karpathy = {"images": [
      {"filename": "1.jpg", "split": "test", "sentences": [{"raw": " a dog. "}, {"raw": "dog"}]},
      {"filename": "2.jpg", "split": "test", "sentences": [{"raw": "a cat"}]},
      {"filename": "3.jpg", "split": "train", "sentences": [{"raw": "a cow"}]}]}
  path = tmp_path / "dataset_flickr30k.json"
  path.write_text(json.dumps(karpathy))
  pairs = retrieval.flickr_pairs(str(path))
  assert pairs[1] == [("1.jpg", "a dog."), ("1.jpg", "dog"), ("2.jpg", "a cat")]
  with pytest.raises(errors.DataError, match=r"imgs: 1 of the 2 images of the "
                     r"annotations are missing, e.g. '2.jpg'"):
    retrieval.Retrieval("flickr30k", pairs, str(tmp_path / "imgs"))
  with pytest.raises(errors.DataError, match=r"imgs: only 1 of the 2 images of the "
                     r"annotations are present, fewer than the minimum of 100"):
    retrieval.Retrieval("flickr30k", pairs, str(tmp_path / "imgs"), allow_missing_images=True)
  present = retrieval.Retrieval("flickr30k", pairs, str(tmp_path / "imgs"),
                                allow_missing_images=True, min_images=1)
  assert present.captions == ["a dog.", "dog"] and list(present.caption_image) == [0, 0]
  coco = {"images": [{"id": 7, "file_name": "000000000007.jpg"}],
          "annotations": [{"image_id": 7, "caption": "x"}, {"image_id": 9, "caption": "y"}]}
  path = tmp_path / "captions.json"
  path.write_text(json.dumps(coco))
  with pytest.raises(errors.DataError, match=r"captions.json: 1 captions name an image "
                     r"id that is not in 'images', e.g. 9"):
    retrieval.coco_pairs(str(path))


class PlantedEmbedder:
  """Texts and images embedded by rule, to check the zero-shot scoring: a text's embedding
  is the one-hot of the class name it contains; an image's is the one-hot of a planted class."""

  geometry = sphere.SPHERE

  def __init__(self, classes, image_class):
    self.classes, self.image_class = classes, image_class

  def texts(self, texts):
    eye = np.eye(len(self.classes), dtype=np.float32)
    # Longest name first, so that 'maple_tree' is not read as 'tree'.
    by_length = sorted(range(len(self.classes)), key=lambda i: -len(self.classes[i]))
    return np.stack([eye[next(i for i in by_length if self.classes[i] in t)]
                     for t in texts]), np.zeros(len(self.classes), np.float32)

  def images(self, images):
    return np.eye(len(self.classes), dtype=np.float32)[self.image_class[:len(images)]]


def test_cifar_through_tfds_mock_data_with_planted_accuracy():
  tfds = pytest.importorskip("tensorflow_datasets")
  from hierre_jax.evaluators import prompts, zero_shot
  classnames = shared_path("classnames", "cifar_classnames_openai.json")
  classes, templates = prompts.load_classnames(classnames, "CIFAR100")
  with tfds.testing.mock_data(num_examples=40):
    evaluator = zero_shot.ZeroShot.cifar("cifar100", classnames)
  labels = evaluator.labels
  assert len(evaluator.images) == 40 and evaluator.images[0].size == (32, 32)
  # 30 images embedded as their own class, 10 as another class: top-1 = 0.75.
  planted = labels.copy()
  planted[:10] = (labels[:10] + 1) % 100
  got = evaluator.run(PlantedEmbedder(classes, planted))
  assert got["top1"] == pytest.approx(0.75) and got["num_templates"] == 18
  # A wrong image scores 1 for its planted class p and 0 for every other class; ties rank
  # the lower class index first, so its true class c has rank 1 + c - [p < c] (0-based).
  ranks = [1 + c - int(p < c) for c, p in zip(labels[:10], planted[:10])]
  want_top5 = (30 + sum(r < 5 for r in ranks)) / 40
  assert got["top5"] == pytest.approx(want_top5)


def test_zero_shot_equals_a_loop_over_images(tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  from hierre_jax.evaluators import zero_shot
  classes, templates = ["dog", "cat", "car", "tree", "boat", "house"], ["a photo of a {}.", "{}"]
  images, labels = random_pil_images(12, seed=2), np.arange(12) % 6
  got = zero_shot.ZeroShot("planted", classes, templates, images, labels).run(tiny_embedder)
  hits = {1: 0, 5: 0}
  for image, label in zip(images, labels):
    [v] = tiny_embedder.images([image])
    scores = []
    for name in classes:
      feats, _ = tiny_embedder.texts([t.format(name) for t in templates])
      mean = feats.astype(np.float64).mean(0)
      scores.append(v @ (mean / np.linalg.norm(mean)))
    rank = sorted(range(len(classes)), key=lambda c: -scores[c]).index(label)
    hits = {k: n + (rank < k) for k, n in hits.items()}
  assert (got["top1"], got["top5"]) == pytest.approx((hits[1] / 12, hits[5] / 12))
  assert (got["num_images"], got["num_classes"], got["num_templates"]) == (12, 6, 2)


def test_unprepared_tfds_data_says_how_to_prepare_it(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from hierre_jax.evaluators import zero_shot
  with pytest.raises(errors.DataError, match=r"'cifar10' \(test\) is not prepared in .*"
                     r"tfds.data_source\('cifar10', split='test', download=True\)"):
    zero_shot.tfds_images("cifar10", data_dir=str(tmp_path))


@pytest.mark.reordering
def test_prompt_ensemble_averages_normalised_template_embeddings(tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  from hierre_jax.evaluators import prompts
  templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
  got = prompts.ensemble(tiny_embedder, ["dog", "cat"], templates)
  for label, row in zip(["dog", "cat"], got):
    feats, _ = tiny_embedder.texts([t.format(label) for t in templates])
    mean = feats.astype(np.float64).mean(0)
    # float32 mean of 3 unit vectors, then its norm over 16 dims, against float64
    tolerances.assert_reordered_close(row, mean / np.linalg.norm(mean), terms=3 + 16, scale=1.0)


def random_pil_images(n, seed=0, size=40):
  from PIL import Image
  rng = np.random.default_rng(seed)
  return [Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)) for _ in range(n)]


def test_breeds_pair_ranks_equal_a_loop_over_pairs_with_real_living17_labels(tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  from hierre_jax.geometry import sphere
  from hierre_jax.evaluators import breeds, prompts
  hierarchy = breeds.Hierarchy(shared_path("breeds", "breeds_hierarchies_full.json"), "living17")
  assert len(hierarchy.labels) == 85 and len(hierarchy.pair_of_wnid) == 68
  templates = ["a photo of a {}.", "a drawing of the {}."]
  label_emb = prompts.ensemble(tiny_embedder, hierarchy.labels, templates)
  _, root = tiny_embedder.texts([])
  image_emb = tiny_embedder.images(random_pil_images(6))
  targets = np.array(list(hierarchy.pair_of_wnid.values())[:6])
  alphas = (0.0, 0.7)
  got = breeds.pair_ranks(image_emb, label_emb, root, targets, alphas, chunk=4)

  d = [float(sphere.radius(t, root)) for t in label_emb]
  pairs = [(x, y) for x in range(85) for y in range(85) if d[x] < d[y]]
  ext = {(x, y): ext_float64(label_emb[x].astype(np.float64), label_emb[y].astype(np.float64),
                             root.astype(np.float64)) for x, y in pairs}
  for a, alpha in enumerate(alphas):
    for m, v in enumerate(image_emb):
      s = label_emb.astype(np.float64) @ v.astype(np.float64)
      scores = [s[x] + s[y] - alpha * ext[x, y] for x, y in pairs]
      order = sorted(range(len(pairs)), key=lambda p: -scores[p])  # stable: ties keep order
      want = (order.index(pairs.index(tuple(targets[m]))) if tuple(targets[m]) in pairs
              else len(pairs))
      assert got[a, m] == want, (alpha, m)


def test_breeds_cross_validation_and_folders(tmp_path, tiny_embedder):
  needs(tiny_embedder.model, geometry="sphere")  # MERU's: tests/test_meru.py
  from hierre_jax.evaluators import breeds
  hits = np.zeros((4, 10), bool)
  hits[2] = True  # alpha 2 is right on every image
  hits[1, :3] = True
  recall, chosen, held_out = breeds.cross_validated_recall(hits)
  assert (recall, chosen) == (1.0, [2, 2]) and held_out.tolist() == [1.0] * 10
  hits[2, :] = False
  hits[3, 0] = True
  recall, chosen, held_out = breeds.cross_validated_recall(hits, seed=1)
  order = np.random.default_rng(1).permutation(10)
  halves = (order[:5], order[5:])
  want = np.mean([hits[int(np.argmax(hits[:, f].mean(1))), t].mean()
                  for f, t in (halves, halves[::-1])])
  assert recall == pytest.approx(want) == held_out.mean()  # equal halves: the items' mean
  for (fit, test), best in zip((halves, halves[::-1]), chosen):
    np.testing.assert_array_equal(held_out[test], hits[best, test])

  hierarchies = shared_path("breeds", "breeds_hierarchies_full.json")
  hierarchy = breeds.Hierarchy(hierarchies, "living17")
  root = tmp_path / "val"
  wnids = list(hierarchy.pair_of_wnid)
  for i, (wnid, image) in enumerate(zip(wnids, random_pil_images(len(wnids)))):
    (root / wnid).mkdir(parents=True)
    image.save(root / wnid / f"ILSVRC2012_val_{i:08d}.JPEG")
  classnames = shared_path("classnames", "imagenet_classnames_openai.json")
  evaluator = breeds.Breeds(hierarchies, classnames, str(root), datasets=("living17",))
  got = evaluator.run(tiny_embedder)
  assert got["living17"]["num_images"] == 68 and got["living17"]["num_labels"] == 85
  assert 0 <= got["mean/r@1"] <= got["mean/r@5"] <= 1 and len(got["alphas"]) == 20
  (root / wnids[5] / f"ILSVRC2012_val_{5:08d}.JPEG").unlink()
  with pytest.raises(errors.DataError, match=f"no images for class {wnids[5]}"):
    breeds.Breeds(hierarchies, classnames, str(root), datasets=("living17",))


def test_evaluators_are_registered_by_name_and_the_published_numbers_fit_the_table(monkeypatch):
  from hierre_jax.evaluators import published
  from hierre_jax.evaluators import registry
  from hierre_jax.evaluators import suite
  with pytest.raises(errors.UserError, match=r"unknown evaluations \['coc'\]; available: "
                     r"hierarcaps, hyperlex, breeds, coco, flickr30k, cifar10, cifar100"):
    suite.build(["coc"], {})
  # One entry is all a new evaluator needs: its files, its builder, its columns.
  class Constant:
    name = "constant"
    def __init__(self, path):
      self.path = path
    def run(self, embedder):
      return {"value": len(self.path), "embedder": embedder}
  monkeypatch.setitem(registry.ENTRIES, "constant", registry.Entry(
      "constant", files={"constant_file": ("x", "y.txt")},
      build=lambda paths, options: Constant(paths["constant_file"]),
      columns=(("Constant", "constant/value"),)))
  paths = registry.default_paths("D")
  assert paths["constant_file"] == os.path.join("D", "x", "y.txt")
  assert paths["hyperlex"] == os.path.join("D", "hyperlex", "hyperlex-all.txt")
  evaluator, = suite.build(["constant"], paths)
  assert suite.evaluate("m", [evaluator]) == {"constant/value": len(paths["constant_file"]),
                                              "constant/embedder": "m"}
  # Every published number has its column, and every column its evaluator's metric prefix.
  keys = {key for _, key in tables.TABLE}
  for rows in published.SUITE.values():
    for name, row in rows.items():
      assert set(row) <= keys, name
  for row in published.ABLATIONS.values():
    assert set(row) <= keys
  for name, entry in registry.ENTRIES.items():
    assert all(key.startswith(f"{name}/") for _, key in entry.columns), name


def test_the_table_keeps_published_columns_of_evaluated_benchmarks():
  """--reference=meru beside a sphere model: MERU's traversal P/R stay in the table (the
  paper's row has them, HierarCaps was evaluated); a benchmark not evaluated stays out."""
  from hierre_jax.evaluators import published
  ours = [{"model": "m", "hierarcaps/precision": 0.5, "hierarcaps/recall": 0.4,
           "hierarcaps/tau_d": 0.9, "hierarcaps/num_images": 1000}]
  lines = tables.markdown_table(ours, published.SUITE["meru"].items()).splitlines()
  assert "MERU traversal P" in lines[0] and "COCO" not in lines[0]
  assert "| paper: MERU ViT-L (hyperbolic traversal) | " in "\n".join(lines)
  meru_row = next(l for l in lines if l.startswith("| paper: MERU ViT-L (hyperbolic"))
  assert "| 0.110 | 0.110 |" in meru_row
  # a benchmark only the paper's rows have is left out (HyperLex not evaluated here)
  assert "HyperLex" not in lines[0]


def test_bootstrap_intervals_and_paired_differences_on_constructed_items():
  """Percentile-bootstrap intervals cover what they should, shrink with n, are the same for
  the same seed; a paired difference of a model with itself is exactly 0, one of a model
  better on every item is above 0; Spearman items recompute scipy's rho."""
  import scipy.stats
  rng = np.random.default_rng(3)
  coin = uncertainty.hits(rng.random(1000) < 0.3)
  lo, hi = uncertainty.interval(coin)
  assert lo < 0.3 < hi and hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 1000), rel=0.15)
  assert uncertainty.interval(coin) == [lo, hi]  # seeded
  small = uncertainty.hits(coin.arrays[0][:100])
  assert np.diff(uncertainty.interval(small))[0] > 2.5 * (hi - lo)
  assert uncertainty.paired_difference(coin, coin) == (0.0, [0.0, 0.0])
  better = uncertainty.hits(np.maximum(coin.arrays[0], rng.random(1000) < 0.2))
  d, (dlo, dhi) = uncertainty.paired_difference(better, coin)
  assert d > 0 and 0 < dlo <= d <= dhi
  x, y = rng.normal(size=500), rng.normal(size=500)
  y += x
  rho = uncertainty.Items("spearman", (x, y))
  assert uncertainty.value(rho) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
  assert uncertainty.interval(rho)[0] < uncertainty.value(rho) < uncertainty.interval(rho)[1]
  weighted = uncertainty.Items("weighted_mean", (np.array([1.0, 0, 0, 0]), np.array([0.5, 0.5,
                                                                                    1 / 6] + [1 / 6])))
  assert uncertainty.value(weighted) == pytest.approx(0.5 / (1 + 1 / 3))
  with pytest.raises(ValueError, match="not the same items"):
    uncertainty.paired_difference(coin, small)


def test_length_control_scores_length_zero_beyond_length():
  """A radius that is the token count scores the token-count baseline and exactly 0 beyond
  length; a radius that knows depth among captions of equal length scores above 0; the
  controlled subsets follow the paper's rules."""
  from hierre_jax.evaluators import length_control
  from hierre_jax.radial import hierarchical_retrieval as hr
  rng = np.random.default_rng(0)
  rows, depth = 400, np.tile(np.arange(4), (400, 1))
  counts = depth * 2 + rng.integers(0, 6, size=(rows, 4))  # longer with depth, overlapping
  index = np.arange(rows * 4).reshape(rows, 4)
  flat_counts, flat_depth = counts.ravel(), depth.ravel().astype(float)
  as_length = length_control.residual_after_length(flat_counts * 0.1, flat_counts)
  assert not as_length.any()
  assert length_control.tau_a_vs_order(as_length[index]).mean() == 0.0
  knows = flat_depth + 0.01 * flat_counts  # depth beyond what length says
  beyond = length_control.tau_a_vs_order(
      length_control.residual_after_length(knows, flat_counts)[index]).mean()
  assert beyond > 0.5
  assert hr.kendall_tau_vs_order(counts.astype(float)).mean() < hr.kendall_tau_vs_order(
      knows[index]).mean()
  words = np.array([[3, 3, 5, 9], [2, 3, 4, 8], [2, 2, 6, 11]])
  masks = length_control.subset_masks(words)
  assert masks["same_general_words"].tolist() == [True, False, True]
  assert masks["close_specific_words"].tolist() == [True, True, False]
  assert length_control.word_counts(["a dog", " two  big cats "]).tolist() == [2, 3]


def test_results_md_has_baselines_intervals_and_marks_differences_holding_zero(tmp_path):
  """results.md from constructed results: baseline rows, intervals beside numbers, the
  length and depth tables, paired differences with '~' where the interval holds 0; the
  items are sealed and read back."""
  from hierre_jax.evaluators import results_files
  rng = np.random.default_rng(1)
  tau = rng.uniform(0.5, 0.9, 300)
  def result(model, shift):
    items = {"hierarcaps/tau_d": uncertainty.hits(np.clip(tau + shift, -1, 1)),
             "hyperlex/rho_all": uncertainty.Items("spearman", (tau, tau + rng.normal(
                 scale=1, size=300)))}
    r = {"model": model, "family": "clip", "hierarcaps/num_rows": 300,
         "hierarcaps/num_images": 300, "hierarcaps/baseline/tokens/tau_d": 0.937,
         "hierarcaps/baseline/tokens/tau_d_ci95": [0.93, 0.945], "hyperlex/num_pairs": 300,
         "items": items}
    for key, it in items.items():
      r[key], r[f"{key}_ci95"] = uncertainty.value(it), uncertainty.interval(it)
    return r
  results = [result("a", 0.0), result("b", 0.05)]
  results_files.write(results, str(tmp_path), ["clip_b32"])
  md = (tmp_path / "results.md").read_text()
  assert "| baseline: token count (clip tokenizer) |  |  | 0.937 [0.930, 0.945] (n=300) |" in md
  a = results[0]
  lo, hi = a["hierarcaps/tau_d_ci95"]
  assert f"| a |  |  | {a['hierarcaps/tau_d']:.3f} [{lo:.3f}, {hi:.3f}] (n=300) |" in md
  line = next(l for l in md.splitlines() if l.startswith("| b | +"))
  assert "+0.050 [+0.0" in line and line.count(" ~") == 1  # tau_d found, rho not
  back = results_files.read_results(str(tmp_path))
  assert back[1]["paired_differences"]["to"] == "a"
  np.testing.assert_array_equal(back[1]["items"]["hierarcaps/tau_d"].arrays[0],
                                results[1]["items"]["hierarcaps/tau_d"].arrays[0])
  with open(tmp_path / "items.json", "a") as f:
    f.write(" ")
  with pytest.raises(errors.DataError, match="items.json: changed or damaged"):
    results_files.read_results(str(tmp_path))


@pytest.mark.parametrize("killed_at", ["before the seal", "after the seal",
                                       "after items.json"])
def test_a_results_write_killed_anywhere_reads_back_whole(tmp_path, monkeypatch, killed_at):
  """results.json and items.json change together: a write killed before the new seal reads
  back the old pair, one killed after it the new pair (put in place on reading); never a
  folder refused as damaged."""
  from hierre_jax.common import sealed
  from hierre_jax.evaluators import results_files
  item = lambda v: {"hierarcaps/tau_d": uncertainty.hits(np.full(20, v))}
  old = [{"model": "a", "hierarcaps/tau_d": 0.5, "items": item(0.5)}]
  new = old + [{"model": "b", "hierarcaps/tau_d": 0.7, "items": item(0.7)}]
  results_files.write(old, str(tmp_path))

  class Killed(Exception):
    pass
  real_seal, real_replace = sealed.seal, os.replace
  def seal(*args, **kwargs):
    if killed_at == "before the seal":
      raise Killed
    real_seal(*args, **kwargs)
  def replace(src, dst):
    if (killed_at == "after the seal" and dst.endswith("items.json")) or (
        killed_at == "after items.json" and dst.endswith("results.json")):
      raise Killed
    real_replace(src, dst)
  monkeypatch.setattr(sealed, "seal", seal)
  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(Killed):
    results_files.write(new, str(tmp_path))
  monkeypatch.undo()
  back = results_files.read_results(str(tmp_path))
  want = old if killed_at == "before the seal" else new
  assert [r["model"] for r in back] == [r["model"] for r in want]
  assert [r["items"]["hierarcaps/tau_d"].arrays[0][0] for r in back] == [
      r["items"]["hierarcaps/tau_d"].arrays[0][0] for r in want]
  sealed.verify(str(tmp_path), results_files.SEAL)
