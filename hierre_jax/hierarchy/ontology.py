"""Human ontologies over a set of classes, as trees (SEED000 step 4): WordNet 3.0 through
NLTK, and one-level groupings (the CIFAR-100 superclasses, BREEDS superclasses)."""
import csv

from hierre_jax.common import errors
from hierre_jax.hierarchy import trees

INSTALL = ("WordNet for NLTK is needed: pip install 'hierre_jax[hierarchy]', then "
           "python -c \"import nltk; nltk.download('wordnet')\", or set NLTK_DATA to a folder "
           "holding corpora/wordnet (e.g. ../shared/nltk_data)")


class OntologyError(errors.UserError):
  """Missing WordNet, or a class without a synset; the message says which and how to fix it."""


def wordnet():
  """NLTK's WordNet 3.0 reader, or OntologyError saying how to install it."""
  try:
    from nltk.corpus import wordnet as wn  # pylint: disable=import-outside-toplevel
    wn.ensure_loaded()
  except (ImportError, LookupError) as e:
    raise OntologyError(f"{INSTALL} ({type(e).__name__})") from e
  return wn


def synset_of_wnid(wn, wnid, where="a class"):
  """An ImageNet wnid ('n02084071') -> its WordNet noun synset; OntologyError naming
  `where` when it is none."""
  try:
    synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
  except (ValueError, IndexError, TypeError, LookupError):
    synset = None
  if synset is None:
    raise OntologyError(f"{where}: wnid {wnid!r} is not a WordNet 3.0 noun ('n' and the "
                        "8-digit offset, e.g. n02084071)")
  return synset


def read_cifar100_tsv(tsv_path, class_names):
  """Rows (coarse, fine, wnid, ...) of `ontology/cifar100_wordnet_curated.tsv` for
  `class_names` ('aquarium fish' is the row 'aquarium_fish'), in class order."""
  with open(tsv_path, encoding="utf-8") as f:
    rows = {r["fine"]: r for r in csv.DictReader(f, delimiter="\t")}
  missing = [c for c in class_names if c.replace(" ", "_") not in rows]
  if missing:
    raise OntologyError(f"{tsv_path}: no row for the classes {missing[:5]} "
                        f"({len(missing)} of {len(class_names)})")
  return [rows[c.replace(" ", "_")] for c in class_names]


def first_hypernym(synset):
  """The hypernym a path follows (CHOICE): of a synset's hypernyms (instance hypernyms where
  it has none), the deepest (largest max_depth, the most specific route), ties by name.
  NLTK keeps a synset's hypernyms in a set, so their listed order changes from one Python
  process to the next (hash randomisation): "the first listed" would not be reproducible.
  None at WordNet's top."""
  above = synset.hypernyms() or synset.instance_hypernyms()
  return min(above, key=lambda s: (-s.max_depth(), s.name())) if above else None


def hypernym_path(synset):
  """Synsets from WordNet's top (entity.n.01) down to `synset` along `first_hypernym`."""
  path = [synset]
  while (above := first_hypernym(path[-1])) is not None:
    path.append(above)
  return path[::-1]


def wordnet_tree(class_names, synsets):
  """Leaf i (class i) below its synset's node on the first-hypernym path; internal nodes
  are named by synset ('dog.n.01'). Unary chains stay (`Tree.collapsed` removes them)."""
  return trees.from_paths(class_names, [[s.name() for s in hypernym_path(s)] for s in synsets])


def grouping_tree(class_names, groups):
  """A one-level ontology: leaf i below the node `groups[i]` (e.g. a CIFAR-100 superclass)."""
  return trees.from_paths(class_names, [[g] for g in groups])


def is_ancestor_or_self(general, specific):
  """Whether synset `general` lies on the first-hypernym path of synset `specific`."""
  return general in hypernym_path(specific)
