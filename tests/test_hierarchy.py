"""Centroid hierarchies (SEED000): planted trees are recovered, random ones score chance,
each measure against a hand-worked tree, naming, WordNet ontologies."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tolerances
from conftest import SHARED_NLTK_DATA
from hierre_jax import models
from hierre_jax.hierarchy import consistency, naming, ontology, trees

SHARED_ROOT = os.path.join(os.path.dirname(SHARED_NLTK_DATA))


def planted(paths, dim=64, decay=0.3, seed=0):
  """Leaf embeddings built from their ontology paths: the sum over the path of a random
  direction per node, scaled by decay**depth; -> ([K, dim] unit centroids, ontology
  tree, {node name: its planted [dim] vector, the sum down to it})."""
  rng = np.random.default_rng(seed)
  vectors, points = {}, []
  for path in paths:
    total = np.zeros(dim)
    for depth, name in enumerate(path):
      if name not in vectors:
        vectors[name] = total + decay ** depth * rng.normal(size=dim)
      total = vectors[name]
    points.append(total + decay ** len(path) * rng.normal(size=dim))
  points = np.array(points)
  names = [f"c{i}" for i in range(len(paths))]
  return points / np.linalg.norm(points, axis=1, keepdims=True), trees.from_paths(names, paths), \
      vectors


# An irregular ontology: 13 classes, nodes of 2, 3 and 4 children, depths 2 to 4.
PLANTED_PATHS = [["a", "a1"], ["a", "a1"], ["a", "a1"], ["a", "a2", "a21"], ["a", "a2", "a21"],
                 ["a", "a2"], ["b", "b1", "b11", "b111"], ["b", "b1", "b11", "b111"],
                 ["b", "b1", "b11"], ["b", "b1"], ["b", "b2"], ["b", "b2"], ["b", "b2"]]


@pytest.mark.parametrize("linkage", trees.LINKAGES)
def test_planted_tree_is_recovered_exactly(linkage):
  centroids, onto, _ = planted(PLANTED_PATHS)
  tree = trees.dendrogram(centroids, onto.names[:onto.num_leaves], linkage)
  measures = consistency.tree_measures(tree, onto, consistency.leaf_triples(13))
  assert measures["triplet_agreement"] == 1.0 and measures["resolved_triplets"] > 100
  assert measures["compatible_clades"] == 1.0
  assert measures["reproduced_ontology_clades"] == 1.0
  assert measures["cophenetic_spearman"] > 0.8
  assert measures["level_1/fmi"] == 1.0 and measures["level_1/ari"] == 1.0


def test_random_embeddings_score_chance():
  onto = planted(PLANTED_PATHS)[1]
  triples = consistency.leaf_triples(13)
  scores = []
  for seed in range(40):
    centroids = np.random.default_rng(seed).normal(size=(13, 16))
    tree = trees.dendrogram(centroids / np.linalg.norm(centroids, axis=1, keepdims=True),
                            onto.names[:13])
    scores.append(consistency.triplet_agreement(tree, onto, triples)[0])
  assert np.mean(scores) == pytest.approx(1 / 3, abs=0.03)
  # The permutation chance level of a single tree agrees with 1/3 too.
  _, chance = consistency.with_chance(tree, onto, triples, permutations=50)
  assert chance["triplet_agreement"] == pytest.approx(1 / 3, abs=0.04)


def hand_trees(model_pairs):
  """Ontology: r -> A{0, 1}, 2, 3. Model: two cherries `model_pairs` merged at heights
  1 and 2, then the root at 5."""
  onto = trees.from_paths(list("0123"), [["r", "A"], ["r", "A"], ["r"], ["r"]])
  (a, b), (c, d) = model_pairs
  parent = np.full(7, -1)
  parent[[a, b]], parent[[c, d]], parent[[4, 5]] = 4, 5, 6
  return trees.Tree(parent, list("0123") + ["", "", ""], 4, np.array([0, 0, 0, 0, 1, 2, 5.0])), onto


def test_measures_of_a_hand_worked_tree():
  good, onto = hand_trees([(0, 1), (2, 3)])
  bad, _ = hand_trees([(0, 2), (1, 3)])
  triples = consistency.leaf_triples(4)
  # Resolved triples: (0,1,2) and (0,1,3), both by the pair (0,1).
  assert consistency.triplet_agreement(good, onto, triples) == (1.0, 2)
  assert consistency.triplet_agreement(bad, onto, triples) == (0.0, 2)
  np.testing.assert_array_equal(onto.path_lengths(), [[0, 2, 3, 3], [2, 0, 3, 3],
                                                      [3, 3, 0, 2], [3, 3, 2, 0]])
  cophenetic = [1, 5, 5, 5, 5, 2]  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
  path = [2, 3, 3, 3, 3, 2]
  assert consistency.distance_correlations(good, onto)["pearson"] == pytest.approx(
      np.corrcoef(cophenetic, path)[0, 1])
  assert consistency.clade_measures(good, onto) == {
      "compatible_clades": 1.0, "reproduced_ontology_clades": 1.0, "clade_precision": 0.5,
      "clade_f1": pytest.approx(2 / 3), "num_tree_clades": 2, "num_ontology_clades": 1}
  assert consistency.clade_measures(bad, onto)["compatible_clades"] == 0.0
  # The collapsed ontology's level 1 is {0, 1}, {2}, {3}: the good tree cut in 3 matches it.
  assert consistency.cluster_agreement(good, onto) == {1: {"clusters": 3, "fmi": 1.0,
                                                           "ari": 1.0}}
  np.testing.assert_array_equal(good.cut(2), [0, 0, 1, 1])
  # Named edges: parent -> child pairs whose names are ancestor-or-self.
  names = {6: "animal", 4: "dog", 5: "cat", 0: "puppy", 2: "kitten", 1: "car"}
  related = {("animal", "dog"), ("animal", "cat"), ("dog", "puppy")}
  share = consistency.named_edge_consistency(good, names, lambda p, c: (p, c) in related)
  assert share == pytest.approx(3 / 5)  # 6->4, 6->5, 4->0 hold; 4->1, 5->2 do not


def test_naming_picks_the_planted_names():
  centroids, onto, _ = planted(PLANTED_PATHS)
  tree = trees.dendrogram(centroids, onto.names[:13])
  rng = np.random.default_rng(1)
  # A concept's text embedding near the mean of its classes, plus unrelated concepts.
  concepts = [n for n in onto.internal if n != onto.root]
  names = [onto.names[n] for n in concepts] + [f"distractor{i}" for i in range(20)]
  bank = np.array([centroids[onto.leaves_under(n)].mean(0) + 0.002 * rng.normal(size=64)
                   for n in concepts] + list(rng.normal(size=(20, 64))))
  bank /= np.linalg.norm(bank, axis=1, keepdims=True)
  chosen = naming.embedding_names(tree, centroids, bank)
  clade_of = {frozenset(onto.leaves_under(n)): onto.names[n] for n in onto.internal}
  checked = 0
  for node, index in chosen.items():
    planted_name = clade_of.get(frozenset(tree.leaves_under(node)))
    if planted_name not in (None, "(root)"):
      assert names[index] == planted_name, node
      checked += 1
  assert checked == 9  # every planted clade below the root
  unique = naming.embedding_names(tree, centroids, bank, unique=True)
  assert len(set(unique.values())) == len(unique)
  assert unique[tree.root] == chosen[tree.root]  # the root chooses first


@pytest.fixture(scope="module")
def wn():
  if not os.path.isdir(SHARED_NLTK_DATA):
    pytest.skip("no WordNet in ../shared/nltk_data")
  return ontology.wordnet()


def test_wordnet_paths_names_and_lowest_common_ancestor(wn):
  dog, cat, car = wn.synset("dog.n.01"), wn.synset("cat.n.01"), wn.synset("car.n.01")
  path = ontology.hypernym_path(dog)
  assert path[0].name() == "entity.n.01" and path[-1] == dog
  assert naming.lowest_common_ancestor([dog, cat]).name() == "carnivore.n.01"
  assert naming.lowest_common_ancestor([dog, car]).name() == "whole.n.02"
  assert ontology.is_ancestor_or_self(wn.synset("carnivore.n.01"), dog)
  assert not ontology.is_ancestor_or_self(dog, wn.synset("carnivore.n.01"))
  bank = naming.concept_bank([dog, cat])
  assert dog not in bank and wn.synset("carnivore.n.01") in bank
  assert naming.lemma_name(wn.synset("domestic_animal.n.01")) == "domestic animal"
  tree = ontology.wordnet_tree(["dog", "cat", "car"], [dog, cat, car])
  assert tree.names[tree.parent[0]] == "dog.n.01"
  assert tree.names[tree.lca()[0, 1]] == "carnivore.n.01"
  lca = naming.lca_names(trees.dendrogram(np.eye(3)[[0, 0, 2]] + 0.01 * np.eye(3),
                                          ["dog", "cat", "car"]), [dog, cat, car])
  assert sorted(s.name() for s in lca.values()) == ["carnivore.n.01", "whole.n.02"]


def test_cifar100_and_breeds_class_sets_and_ontologies(wn):
  from hierre_jax.hierarchy import classes as classes_lib
  cifar = classes_lib.load("cifar100", SHARED_ROOT, wn)
  classes, synsets = cifar.classes, cifar.synsets
  coarse = cifar.groups["cifar100_superclasses"]
  assert len(classes) == 100 and len(set(coarse)) == 20
  assert synsets[classes.index("aquarium fish")].name() == "fish.n.01"
  assert synsets[classes.index("tiger")].name() == "tiger.n.02"  # the cat, not the person
  living = classes_lib.load("breeds:living17", SHARED_ROOT, wn)
  assert len(living.classes) == 68 and len(set(living.groups["breeds"])) == 17
  assert living.synsets[0].name() in {s.name() for s in
                                      wn.synset("living_thing.n.01").closure(lambda s: s.hyponyms())}
  word_tree = ontology.wordnet_tree(classes, synsets)
  groups = ontology.grouping_tree(classes, coarse)
  assert len(groups.collapsed().clades()) == 20
  # The same classes in both ontologies; WordNet reproduces some superclasses, not all.
  shared = consistency.clade_measures(word_tree, groups)
  assert 0 < shared["reproduced_ontology_clades"] < 1
  with pytest.raises(ontology.OntologyError, match=r"no row for the classes \['unicorn'\]"):
    ontology.read_cifar100_tsv(os.path.join(SHARED_ROOT, "ontology",
                                            "cifar100_wordnet_curated.tsv"), ["unicorn"])


def test_hypernym_paths_do_not_depend_on_the_hash_seed(wn):
  """NLTK lists a synset's hypernyms in a set's order, which changes with PYTHONHASHSEED."""
  code = ("from hierre_jax.hierarchy import ontology\n"
          "wn = ontology.wordnet()\n"
          "print([s.name() for s in ontology.hypernym_path(wn.synset('dog.n.01'))])\n"
          "print([s.name() for s in wn.synset('dog.n.01').hypernyms()])\n")
  outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONHASHSEED=str(seed))).stdout.splitlines()
          for seed in (1, 2, 3)]
  assert len({out[1] for out in outs}) == 2  # NLTK's own order varies...
  assert len({out[0] for out in outs}) == 1  # ...the path does not
  assert "'canine.n.02', 'dog.n.01'" in outs[0][0]


def test_missing_wordnet_says_how_to_install_it(tmp_path):
  code = ("from hierre_jax.hierarchy import ontology\n"
          "try:\n  ontology.wordnet()\nexcept ontology.OntologyError as e:\n  print(e)\n")
  env = dict(os.environ, NLTK_DATA=str(tmp_path), HOME=str(tmp_path))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert "nltk.download('wordnet')" in out.stdout and "NLTK_DATA" in out.stdout, out.stderr


def test_traversal_stops_where_the_planted_uncertainty_is():
  from hierre_jax.hierarchy import centroids as centroids_lib
  from hierre_jax.hierarchy import traversal
  centroids, onto, _ = planted(PLANTED_PATHS)
  tree = trees.dendrogram(centroids, onto.names[:13])
  prototypes = centroids_lib.node_prototypes(tree, centroids)
  # Images at their class centroids walk to their leaf; an image exactly between the two
  # children of one internal node stops there at any threshold below 1 bit.
  split = next(n for n in tree.internal if n != tree.root)
  left, right = (prototypes[c] for c in tree.children[split])
  between = left + right
  between /= np.linalg.norm(between)
  images = np.concatenate([centroids, between[None]])
  stops = traversal.traverse(tree, prototypes, images, 1e4, 0.99)
  np.testing.assert_array_equal(stops[:13], np.arange(13))
  assert stops[13] == split
  # Threshold 0 stops every walk at the root unless the decision is certain to roundoff.
  assert (traversal.traverse(tree, prototypes, images, 1.0, 0.0) == tree.root).all()
  labels = np.concatenate([np.arange(13), [tree.leaves_under(split)[0]]])
  metrics = traversal.traversal_metrics(tree, stops, labels)
  names = [f"node{n}" for n in range(len(tree.parent))]
  explained = traversal.explanations(tree, names, stops, labels, names)
  assert explained[13]["stop"] == split and explained[13]["path"][-1] == f"node{split}"
  assert explained[13]["path"][0] == f"node{tree.root}"
  assert metrics["leaf_accuracy"] == pytest.approx(13 / 14)
  assert metrics["hierarchical_accuracy"] == 1.0
  result = traversal.curve(tree, centroids, images, labels, 1e4, thresholds=(0.0, 0.99))
  assert result["flat_accuracy"] >= 13 / 14  # every centroid is its own nearest class
  assert result["curve"][0]["mean_specificity"] < result["curve"][1]["mean_specificity"]


def test_entry_point_writes_the_hierarchy_and_its_dendrogram(tmp_path, wn, family_dir):
  """A tiny random model of each family, six classes of a class-set file, synthetic images:
  the image modality with the traversal, against WordNet and the file's grouping."""
  import json
  from PIL import Image
  model = family_dir
  wnids = ["n02084071", "n02121808", "n02958343", "n04490091", "n07739125", "n07767847"]
  spec = {"classes": ["dog", "cat", "car", "truck", "apple", "pear"],
          "templates": ["a photo of a {}.", "a drawing of a {}."], "wnids": wnids,
          "groups": {"breeds": ["animal", "animal", "vehicle", "vehicle", "fruit", "fruit"]}}
  (tmp_path / "classes.json").write_text(json.dumps(spec))
  rng = np.random.default_rng(0)
  for split in ("fit", "eval"):
    for k, wnid in enumerate(wnids):
      os.makedirs(tmp_path / split / wnid)
      for i in range(3):
        pixels = np.clip(40 * k + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / split / wnid / f"{i}.png")
  out = tmp_path / "out"
  # The UMAP-guided alignment is built for the sphere (MERU's probe: tests/test_meru.py).
  sphere = models.load(model).geometry.name == "sphere"
  align = ["--align_betas=0.1,1", "--align_steps=20"] if sphere else []
  result = subprocess.run(
      [sys.executable, "-m", "hierre_jax.hierarchy", f"--model={model}",
       f"--classes={tmp_path / 'classes.json'}", "--modality=image", "--ontology=wordnet,breeds",
       f"--images={tmp_path / 'fit'}", f"--eval_images={tmp_path / 'eval'}",
       f"--output_dir={out}", f"--data_dir={SHARED_ROOT}", "--chance_permutations=5",
       *align, f"--image_features_dir={tmp_path / 'store'}"],
      capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-3000:]
  saved = json.loads((out / "hierarchy.json").read_text())
  assert saved["choices"]["linkage"] == "ward" and saved["choices"]["naming"] == "embedding"
  assert len(saved["tree"]["parent"]) == 11 and saved["tree"]["names"][:6] == spec["classes"]
  assert all(saved["tree"]["names"][6:])  # every internal node named from the bank
  for name in ("wordnet", "breeds"):
    measures = saved["ontologies"][name]["measures"]
    assert 0 <= measures["triplet_agreement"] <= 1
    assert "triplet_agreement" in saved["ontologies"][name]["chance"]
  # Dog, cat / car, truck / apple, pear: WordNet resolves 12 of the 20 triples.
  assert saved["ontologies"]["wordnet"]["measures"]["resolved_triplets"] == 12
  assert 0 <= saved["named_edge_consistency"] <= 1
  traversal = saved["traversal"]
  assert traversal["num_images"] == 18 and len(traversal["curve"]) == 21
  store, = [n for n in os.listdir(tmp_path / "store")  # the 36 images' features kept
            if n.endswith(".npz")]
  with np.load(tmp_path / "store" / store) as kept:
    assert kept["features"].shape[0] == 36
  assert traversal["curve"][0]["mean_specificity"] == 0.0  # threshold 0: stop at the root
  first = traversal["explanations"][0]
  assert len(traversal["explanations"]) == 18 and first["label"] == "dog"
  assert first["path"][0] == saved["tree"]["names"][10] and len(first["path"]) == first["depth"] + 1
  if sphere:
    alignment = saved["alignment"]
    assert alignment["ontology"] == "wordnet" and [r["beta"] for r in alignment["rows"]] == [
        None, 0.1, 1.0]
    assert alignment["rows"][0]["triplet_agreement"] == pytest.approx(
        saved["ontologies"]["wordnet"]["measures"]["triplet_agreement"])  # identity
    assert all(0 <= r["zero_shot_accuracy"] <= 1 for r in alignment["rows"])
  assert (out / "dendrogram.png").stat().st_size > 10_000
  assert "triplet agreement" in result.stdout


@pytest.mark.reordering
def test_alignment_raises_consistency_and_starts_at_the_identity():
  from hierre_jax.hierarchy import alignment
  from hierre_jax.hierarchy import centroids as centroids_lib
  centroids, onto, _ = planted(PLANTED_PATHS)
  rng = np.random.default_rng(3)
  # A perturbed planted space: every class centre pushed off by a large random offset.
  centres = centroids + 2.5 * rng.normal(size=centroids.shape) / 8
  labels = np.repeat(np.arange(13), 12)
  samples = centres[labels] + 0.05 * rng.normal(size=(len(labels), 64))
  samples /= np.linalg.norm(samples, axis=1, keepdims=True)
  triples = consistency.leaf_triples(13)
  names = onto.names[:13]
  measure = lambda c: {"triplet_agreement": consistency.triplet_agreement(
      trees.dendrogram(c, names), onto, triples)[0]}
  zero_shot = (centroids_lib.class_means(samples, labels, 13), samples, labels)
  # Zero steps: the identity map changes nothing.
  identity = np.asarray(alignment.apply_map(alignment.identity_map(64), samples))
  tolerances.assert_reordered_close(identity, samples, terms=64, scale=1.0)  # 64-term dots
  rows = alignment.sweep(samples, labels, onto, [0.1], measure, steps=200, zero_shot=zero_shot)
  before, after = rows
  assert before["beta"] is None and before["triplet_agreement"] < 0.7
  assert after["triplet_agreement"] > 0.9
  assert before["zero_shot_accuracy"] == 1.0 and after["zero_shot_accuracy"] > 0.9
  fit = alignment.per_class_subset(labels, 3)
  assert len(fit) == 39 and (np.bincount(labels[fit]) == 3).all()
  unchanged = alignment.fit_map(samples[fit], alignment.target_graph(
      samples[fit], labels[fit], onto.path_lengths()), beta=0.1, steps=0)
  assert measure(centroids_lib.class_means(np.asarray(alignment.apply_map(unchanged, samples)),
                                       labels, 13)) == {"triplet_agreement":
                                                        before["triplet_agreement"]}


def test_cifar100_images_come_from_tensorflow_datasets():
  tfds = pytest.importorskip("tensorflow_datasets")
  from hierre_jax.hierarchy import centroids as centroids_lib
  from hierre_jax.hierarchy import classes as classes_lib
  cifar = classes_lib.load("cifar100", SHARED_ROOT)
  with tfds.testing.mock_data(num_examples=30):
    images, labels = classes_lib.labelled_images(cifar, "", "train")
  assert len(images) == 30 and images[0].size == (32, 32) and max(labels) < 100
  # 30 images cannot cover 100 classes: the error names classes without images.
  with pytest.raises(ValueError, match=r"of the 100 classes have no images, e.g. \['"):
    centroids_lib.image_centroids(None, images, labels, cifar.classes)


GOOD_CLASSES = {"classes": ["dog", "cat", "car", "apple"], "templates": ["a photo of a {}."],
                "wnids": ["n02084071", "n02121808", "n02958343", "n07739125"]}


@pytest.mark.parametrize("change, message", [
    (dict(classes=["dog", "cat", "car", "dog"], wnids=None),
     r"class 3 \('dog'\) repeats the name 'dog' of class 0 \('dog'\); list each class once"),
    (dict(classes=["dog", "cat", "Dog"], wnids=None),
     r"class 2 \('Dog'\) repeats the name 'dog' of class 0 \('dog'\)"),
    (dict(classes=["dog ", "cat", "dog"], wnids=None),
     r"class 2 \('dog'\) repeats the name 'dog' of class 0 \('dog '\)"),
    (dict(wnids=["n02084071", "n02121808", "n02084071", "n07739125"]),
     r"class 2 \('car'\) repeats the WordNet id 'n02084071' of class 0"),
    (dict(templates=["a photo of a {}.", "a photo"]),
     r"template 1 'a photo' needs exactly one '\{\}' where the class name goes"),
    (dict(wnids=["n02084071", "n02121808", "n99999999", "n07739125"]),
     r"class 2 \('car'\): wnid 'n99999999' is not a WordNet 3.0 noun"),
    (dict(wnids=["n02084071", "n02121808"]), r"wnids has 2 entries for 4 classes"),
    (dict(templates=None), r"no 'templates' list; a class set file is"),
    (dict(classes=["dog", "", "car"], wnids=None), r"class 1 is ''; class names are non-empty"),
])
def test_class_set_files_that_would_give_meaningless_numbers_are_refused(tmp_path, wn, change,
                                                                         message):
  import json
  from hierre_jax.common import errors
  from hierre_jax.hierarchy import classes as classes_lib
  spec = {k: v for k, v in {**GOOD_CLASSES, **change}.items() if v is not None}
  path = tmp_path / "classes.json"
  path.write_text(json.dumps(spec))
  with pytest.raises(errors.UserError, match=f"{path}: {message}"):
    classes_lib.load(str(path), SHARED_ROOT, wn)


def test_class_set_names_and_ontologies_are_checked(tmp_path, wn):
  from hierre_jax.common import errors
  from hierre_jax.hierarchy import classes as classes_lib, probe
  (tmp_path / "broken.json").write_text('{"classes": ["a", "b",')
  with pytest.raises(errors.UserError, match=r"broken.json: not valid JSON \(Expecting value: "
                     r"line 1"):
    classes_lib.load(str(tmp_path / "broken.json"), SHARED_ROOT, wn)
  with pytest.raises(errors.UserError, match=r"--classes=breeds:living71: .* has no BREEDS "
                     r"dataset 'living71'; use one of entity13, entity30, living17, nonliving26"):
    classes_lib.load("breeds:living71", SHARED_ROOT, wn)
  with pytest.raises(errors.UserError, match=r"nosuch.json: no such class set file \(--classes "
                     r"takes cifar100, imagenet, breeds:<name> or a FILE.json\)"):
    classes_lib.load("nosuch.json", SHARED_ROOT, wn)
  cifar = classes_lib.load("cifar100", SHARED_ROOT, wn)
  with pytest.raises(ontology.OntologyError, match=r"--ontology=breeds: the class set cifar100 "
                     r"has no 'breeds' grouping; use one of wordnet, cifar100_superclasses"):
    probe.ontology_tree("breeds", cifar)
