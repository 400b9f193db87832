"""Retrieval and metrics: hand-worked cases, and a slow obviously-correct loop on the real test set."""
import os

import numpy as np
import pytest

from conftest import shared_file
from hierre_jax.data import hierarcaps_csv
from hierre_jax.data import indexing
from hierre_jax.evaluators import hierarcaps
from hierre_jax.radial import hierarchical_retrieval as hr
from hierre_jax.radial import report
from references import slow_reference


def test_levels_and_hand_worked_retrieval():
  np.testing.assert_allclose(hr.radius_levels(np.array([0.1, 1.0, 0.5]), 5),
                             [0.1, 0.325, 0.55, 0.775, 1.0])
  # Candidates A, B, C (radius 0.1, 0.5, 1.0); similarities with the image 0.2, 0.9, 0.5.
  text = np.array([[0.2, 0.0], [0.9, 0.0], [0.5, 0.0]], np.float32)
  radii = np.array([0.1, 0.5, 1.0])
  image = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
  preds = hr.retrieve(text, radii, image, num_levels=5)
  np.testing.assert_array_equal(preds, [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])  # -S: A always
  assert hr.prediction_chains(preds) == [[0, 1], [0]]


def test_ties_go_to_the_first_candidate():
  text = np.array([[1.0, 0.0], [0.5, 0.0], [1.0, 0.0]], np.float32)  # 0 and 2 tie
  radii = np.array([0.9, 0.1, 0.5])
  preds = hr.retrieve(text, radii, np.array([[1.0, 0.0]], np.float32), num_levels=3)
  # Levels 0.1, 0.5, 0.9: {1} -> 1; {1, 2} -> 2; {0, 1, 2} -> 0 and 2 tie -> 0.
  np.testing.assert_array_equal(preds, [[1, 2, 0]])


def test_precision_recall_with_several_rows_per_image():
  preds = np.array([[0, 0, 1, 1, 2], [3, 3, 3, 3, 3]])
  gt = np.array([[[0, 5, 6, 2], [7, 1, 8, 9]],
                 [[4, 4, 3, 3], [-1, -1, -1, -1]]])  # a row with repeated texts
  precision, recall = hr.precision_recall(preds, gt)
  np.testing.assert_allclose(precision, [1.0, 1.0])
  np.testing.assert_allclose(recall, [0.75, 0.5])
  precision, recall = hr.precision_recall(np.array([[5, 6, 6, 7]]), np.array([[[5, 1, 2, 3]]]))
  np.testing.assert_allclose(precision, [1 / 3])
  np.testing.assert_allclose(recall, [0.25])


TAU_ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4],
                     [0.1, 0.1, 0.3, 0.4], [0.2, 0.2, 0.2, 0.2], [0.3, 0.1, 0.1, 0.2]])


def test_kendall_tau_b():
  scipy_stats = pytest.importorskip("scipy.stats")
  got = hr.kendall_tau_vs_order(TAU_ROWS, ties="tau_b")
  np.testing.assert_allclose(got[:3], [1.0, -1.0, 4 / 6])
  assert got[3] == pytest.approx(5 / np.sqrt(30))
  assert np.isnan(got[4])
  for row, tau in zip(TAU_ROWS[:4], got):
    assert tau == pytest.approx(scipy_stats.kendalltau(row, [1, 2, 3, 4]).statistic)


def test_kendall_tau_release_ties_count_as_in_order():
  scipy_stats = pytest.importorskip("scipy.stats")
  got = hr.kendall_tau_vs_order(TAU_ROWS)  # the release's rule is the default
  # Planted ties: [.1, .1, .3, .4] is in order (1.0); a constant row scores 1.0, not NaN;
  # [.3, .1, .1, .2]: stable ranks [4, 1, 2, 3] -> 3 concordant, 3 discordant pairs -> 0.
  np.testing.assert_allclose(got, [1.0, -1.0, 4 / 6, 1.0, 1.0, 0.0])
  for row, tau in zip(TAU_ROWS, got):  # = tau of the stable-sort ranks (no ties left)
    ranks = np.argsort(np.argsort(row, kind="stable"), kind="stable")
    assert tau == pytest.approx(scipy_stats.kendalltau(ranks, [0, 1, 2, 3]).statistic)
  with pytest.raises(ValueError, match="ties="):
    hr.kendall_tau_vs_order(TAU_ROWS, ties="other")


def test_levels_are_float64_rounded_to_float32():
  radii = np.array([0.3, 1.7, 0.9], np.float32)
  want = np.linspace(np.float64(radii.min()), np.float64(radii.max()), 50).astype(np.float32)
  got = hr.radius_levels(radii)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, want)
  assert (got != np.linspace(radii.min(), radii.max(), 50, dtype=np.float32)).any()


def test_grouping_rows_by_image():
  images, table = hr.group_rows_by_image(["b.jpg", "a.jpg", "b.jpg"])
  assert images == ["a.jpg", "b.jpg"]
  np.testing.assert_array_equal(table, [[1, -1], [0, 2]])
  gt = hr.ground_truth_indices(table, np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]))
  np.testing.assert_array_equal(gt[0, 1], [-1, -1, -1, -1])
  np.testing.assert_array_equal(gt[1, 1], [8, 9, 10, 11])


def test_batched_equals_slow_loop_on_the_real_test_set(rng):
  data = hierarcaps_csv.read_hierarchies(shared_file("hierarcaps_test.csv"))
  candidates, row_tier_index = indexing.index_rows(data.positives)
  dim = 16
  # Low-dimensional, root-biased embeddings so that retrieval finds ground truth now and then.
  emb_matrix = rng.normal(size=(len(candidates), dim))
  emb_matrix /= np.linalg.norm(emb_matrix, axis=1, keepdims=True)
  emb = dict(zip(candidates, emb_matrix))
  root = rng.normal(size=dim)
  root /= np.linalg.norm(root)
  images = sorted(set(data.images))
  image_emb = {name: emb[row[3]] + 0.3 * rng.normal(size=dim)
               for name, row in zip(data.images, data.positives)}
  want = slow_reference(data.positives, data.images, emb, root, image_emb)

  _, table = hr.group_rows_by_image(data.images)
  radii = np.linalg.norm(emb_matrix - root, axis=1)
  preds = hr.retrieve(emb_matrix.astype(np.float32), radii,
                      np.stack([image_emb[n] for n in images]).astype(np.float32), chunk=300)
  got, *_ = hr.hierarcaps_metrics(preds, table, row_tier_index, radii)
  assert (got["precision"], got["recall"], got["tau_d"]) == pytest.approx(want, abs=1e-12)
  assert got["recall"] > 0.05 and got["num_candidates"] == len(candidates)


def test_report_files(tmp_path):
  path = shared_file("test_images/COCO_val2014_000000000139.jpg")
  chains = {os.path.basename(path): ["room", "living room", "a room with a <tv> & chairs"]}
  report.write_all(chains, os.path.dirname(path), str(tmp_path / "q"))
  page = (tmp_path / "q.html").read_text()
  assert "a room with a &lt;tv&gt; &amp; chairs" in page and "data:image/jpeg;base64," in page
  assert (tmp_path / "q.csv").read_text().splitlines()[1] == (
      "COCO_val2014_000000000139.jpg,0,room")


def release_qualitative_loop(text, root, image, num_levels=50):
  """SPEC section 4 qualitative mode with loops: cosine-distance levels (float64 -> float32),
  highest similarity among texts within each level, first listed wins ties, repeats dropped."""
  radius = (1.0 - text @ root).astype(np.float32)
  levels = np.linspace(np.float64(radius.min()), np.float64(radius.max()),
                       num_levels).astype(np.float32)
  chain = []
  for t in levels:
    allowed = [i for i in range(len(text)) if radius[i] <= t]
    best = max(allowed, key=lambda i: (float(text[i] @ image), -i))
    if not chain or chain[-1] != best:
      chain.append(best)
  return chain


def test_qualitative_cosine_levels_differ_from_euclidean_and_match_the_release(rng):
  from hierre_jax.geometry import sphere
  dim = 8
  root = np.eye(dim, dtype=np.float32)[0]
  text = rng.normal(size=(300, dim)).astype(np.float32)
  text[:, 0] += np.linspace(-2.0, 4.0, 300, dtype=np.float32)  # radii spread widely
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  images = rng.normal(size=(20, dim)).astype(np.float32)
  images /= np.linalg.norm(images, axis=1, keepdims=True)
  cosine = hr.prediction_chains(hr.retrieve(
      text, np.asarray(sphere.cosine_distance(text, root)), images))
  euclid = hr.prediction_chains(hr.retrieve(
      text, np.asarray(sphere.radius(text, root)), images))
  assert cosine == [release_qualitative_loop(text, root, v) for v in images]
  assert sum(c != e for c, e in zip(cosine, euclid)) >= 5  # the level spacing matters
  published = hierarcaps.published_form({"a.jpg": ["root-most", "x", "y"]})
  assert published == {"a.jpg": ["x", "y"]}
