"""Benchmark evaluators against obviously-correct slow implementations on the real files."""
import os

import numpy as np
import pytest

from hierre_jax import evaluation, input_pipeline
from hierre_jax.evaluators import hyperlex

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


def shared_path(*parts):
  path = os.path.join(SHARED, *parts)
  if not os.path.exists(path):
    pytest.skip(f"{path} not present")
  return path


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory):
  from conftest import TINY_TEXT, TINY_VISION
  from hierre_jax import random_clip
  d = random_clip.write_random_clip(str(tmp_path_factory.mktemp("tiny")), TINY_TEXT,
                                    TINY_VISION, 16, seed=5)
  return evaluation.Embedder.from_path(d, text_batch_size=512)


def ext_float64(x, y, root):
  """Exterior angle of SPEC section 2 for one pair, in float64 numpy."""
  u, w = x - root, y - x
  return np.arccos(np.clip(u @ w / (np.linalg.norm(u) * np.linalg.norm(w)), -1, 1))


def test_hyperlex_equals_a_loop_over_the_real_pairs(tiny_embedder):
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
  nouns_file = hyperlex.read_pairs(shared_path("hyperlex", "nouns-verbs", "hyperlex-nouns.txt"))
  assert len(nouns_file.score) == 2163 and set(nouns_file.pos) == {"N"}


def test_hyperlex_bad_lines_name_file_and_line(tmp_path):
  path = tmp_path / "h.txt"
  path.write_text("WORD1 WORD2 POS TYPE AVG_SCORE AVG_SCORE_0_10 STD\n"
                  "dog animal N hyp-1 5.5 9.1 0.5\ncat animal N\n")
  with pytest.raises(input_pipeline.DataError, match=r"h.txt: line 3: expected at least 5 "
                     r"columns WORD1 WORD2 POS TYPE AVG_SCORE, got 3"):
    hyperlex.read_pairs(str(path))
  path.write_text("WORD1 WORD2 POS TYPE AVG_SCORE\ndog animal N hyp-1 high\n")
  with pytest.raises(input_pipeline.DataError, match=r"line 2: AVG_SCORE 'high' is not a number"):
    hyperlex.read_pairs(str(path))
  path.write_text("a b c\n")
  with pytest.raises(input_pipeline.DataError, match=r"h.txt: line 1: expected a header"):
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
  from hierre_jax.evaluators import retrieval
  pairs = retrieval.coco_pairs(shared_path("coco", "captions_val2017.json"))
  images_dir = shared_path("hierarcaps", "test_images")
  with pytest.raises(input_pipeline.DataError, match=r"test_images: 4000 of the 5000 images of "
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
  with pytest.raises(input_pipeline.DataError, match=r"imgs: 1 of the 2 images of the "
                     r"annotations are missing, e.g. '2.jpg'"):
    retrieval.Retrieval("flickr30k", pairs, str(tmp_path / "imgs"))
  present = retrieval.Retrieval("flickr30k", pairs, str(tmp_path / "imgs"),
                                allow_missing_images=True)
  assert present.captions == ["a dog.", "dog"] and list(present.caption_image) == [0, 0]
  coco = {"images": [{"id": 7, "file_name": "000000000007.jpg"}],
          "annotations": [{"image_id": 7, "caption": "x"}, {"image_id": 9, "caption": "y"}]}
  path = tmp_path / "captions.json"
  path.write_text(json.dumps(coco))
  with pytest.raises(input_pipeline.DataError, match=r"captions.json: 1 captions name an image "
                     r"id that is not in 'images', e.g. 9"):
    retrieval.coco_pairs(str(path))
