"""Scorer files: a folder with `scorer.safetensors` (the CNN in the release's PyTorch
`model_state_dict` layout, so that a PyTorch twin of the CNN loads it with
`load_state_dict`, plus `functional_table` [11, rows]) and `dcsm.json` (map size, map
options, backbone, provenance); the import of the released PyTorch checkpoint
(`dcsm_obja_ckpt.pt`), whose `clip_state_dict` becomes a CLIP model directory; and the
writer of that `.pt` layout from a scorer folder and its CLIP, for the release's scripts."""
import json
import os
import pickle
import types

from absl import logging
import jax
import numpy as np
import safetensors.numpy
import transformers

from hierre_jax.common import errors
from hierre_jax import loading
from hierre_jax.common import locations
from hierre_jax.common import sealed
from hierre_jax.dcsm import maps
from hierre_jax.dcsm import scorer
from hierre_jax.models.clip import convert
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import tokenizer as clip_tokenizer

SCORER_FILE = "scorer.safetensors"
INFO_FILE = "dcsm.json"
TABLE_KEY = "functional_table"
# Attention heads of OpenAI CLIP towers by width (a state dict does not store them).
OPENAI_HEADS = {"text": {512: 8, 768: 12, 1024: 16}, "vision": {768: 12, 1024: 16, 1280: 16}}
# The backbone the release's code builds (CLIPModel.from_pretrained of ViT-B/16, 197 map rows)
# before loading a checkpoint's clip_state_dict into it.
RELEASE_BACKBONE = {
    "text_config": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=8, vocab_size=49408, max_position_embeddings=77),
    "vision_config": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, image_size=224, patch_size=16),
    "projection_dim": 512}


def sizes_file(pt_path):
  """The sizes record beside a release-layout .pt (x.pt -> x.config.json): the CLIP config
  that export-release writes and import reads (heads are in no state dict)."""
  return os.path.splitext(pt_path)[0] + ".config.json"


def save(out_dir, params, table, info):
  """Writes the scorer folder: params (Flax), table [11, rows], info (a JSON dict that
  holds at least "rows" and "columns")."""
  os.makedirs(out_dir, exist_ok=True)
  tensors = scorer.to_state_dict(params, info["rows"], info["columns"])
  tensors[TABLE_KEY] = np.asarray(table, np.float32)
  safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                              os.path.join(out_dir, SCORER_FILE), metadata={"format": "pt"})
  with open(os.path.join(out_dir, INFO_FILE), "w") as f:
    json.dump(info, f, indent=1)
  sealed.seal(out_dir, [SCORER_FILE, INFO_FILE])
  return out_dir


def load(path):
  """A scorer folder (or the released .pt checkpoint) -> (params, table [11, rows], info)."""
  if os.path.isfile(path):
    return read_release(path)[:3]
  errors.require_file(os.path.join(path, SCORER_FILE), "DCSM scorer file")
  sealed.verify(path)  # a damaged or unsealed scorer is refused, naming its file
  tensors = safetensors.numpy.load_file(os.path.join(path, SCORER_FILE))
  table = tensors.pop(TABLE_KEY, None)
  params, rows, cols = scorer.from_state_dict(tensors, os.path.join(path, SCORER_FILE))
  info_path = os.path.join(path, INFO_FILE)
  info = {}
  if os.path.exists(info_path):
    with open(info_path) as f:
      info = json.load(f)
  words = functional_words(info)
  if table is None or table.shape != (len(words), rows):
    raise errors.UserError(f"{path}/{SCORER_FILE}: {TABLE_KEY} missing or not "
                           f"[{len(words)}, {rows}]")
  return params, table, {**info, "rows": rows, "columns": cols}


def check_backbone(info, model, scorer):
  """Warns (one line) where a scorer is used with another model than the backbone its
  info records: a same-shaped model gives maps the scorer was not trained on."""
  recorded = info.get("backbone")
  if recorded and locations.canonical(str(recorded)) != locations.canonical(str(model)):
    logging.warning("%s was trained on the backbone %s; scoring with %s: its scores are "
                    "meaningful only if that is the same model", scorer, recorded, model)


def functional_words(info):
  """The words of a scorer's functional table rows, in order: its info's "functional_words"
  (a release checkpoint's learned_lookup), else the release's eleven."""
  return info.get("functional_words") or list(maps.FUNCTIONAL_WORDS)


def _torch(path, doing="reading"):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.UserError(f"{path}: {doing} a PyTorch checkpoint needs torch "
                           "(pip install torch)") from None
  return torch


class Stub:
  """Stands in for every class of a release checkpoint's pickle that is not a tensor, a
  storage or a plain container (the pickled tokenizer of whichever transformers wrote it, an
  nn.Embedding, a compiled pattern): it keeps the arguments and state it is given and runs
  nothing, so no code of the pickle executes and no version of transformers is needed."""

  qualified = "?"

  def __new__(cls, *args, **kwargs):
    del kwargs
    out = super().__new__(cls)
    out.args, out.state = args, None
    return out

  def __setstate__(self, state):
    self.state = state

  def __call__(self, *args, **kwargs):  # a stubbed function called by the pickle
    return Stub.of(f"{self.qualified}()")(*args, **kwargs)

  @staticmethod
  def of(qualified):
    return type("Stub", (Stub,), {"qualified": qualified})


class ReleaseUnpickler(pickle.Unpickler):
  """Unpickles torch's tensors and storages and Python's plain containers; every other
  class becomes a `Stub` (nothing the pickle names is imported beyond those)."""

  PLAIN = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
           ("builtins", "slice"), ("builtins", "complex"), ("builtins", "bytearray"),
           ("copyreg", "_reconstructor"), ("builtins", "object")}

  def find_class(self, module, name):
    if (module, name) in self.PLAIN or (
        module.split(".")[0] == "torch" and not module.startswith("torch.nn.modules")
        and (name.startswith("_rebuild") or "Storage" in name or name in ("Size", "device")
             or module in ("torch._utils", "torch.storage", "torch._tensor"))):
      return super().find_class(module, name)
    if module == "torch.nn.parameter" and name == "Parameter":
      return super().find_class(module, name)
    return Stub.of(f"{module}.{name}")


def release_pickle_module():
  """A `pickle_module` for torch.load whose Unpickler is `ReleaseUnpickler`."""
  return types.SimpleNamespace(Unpickler=ReleaseUnpickler, load=pickle.load,
                               __name__="release_pickle")


def stub_tensor(value, key):
  """The weight of a pickled nn.Embedding (a `Stub` holding its _parameters) or a tensor."""
  if isinstance(value, Stub):
    parameters = value.state.get("_parameters", {}) if isinstance(value.state, dict) else {}
    if "weight" in parameters:
      return parameters["weight"]
    raise errors.UserError(f"{key}: a pickled {value.qualified} without a weight")
  return value


def _torch_load(path):
  torch = _torch(path)
  try:  # a zip pickle of modules and a tokenizer, tensors saved on CUDA
    return torch.load(path, map_location="cpu", weights_only=False,
                      pickle_module=release_pickle_module())
  except Exception as e:  # pylint: disable=broad-except  torch raises many kinds
    raise errors.UserError(f"{path}: cannot read this PyTorch checkpoint ({e})") from e


def tokenizer_files(tokenizer, out_dir):
  """Writes the vocabulary of a release checkpoint's CLIP tokenizer: the {file name: text}
  dict export-release writes (`tokenizer_texts`), or a pickled tokenizer (a `Stub`): a
  transformers 4.x slow CLIPTokenizer's encoder and bpe_ranks as vocab.json and merges.txt,
  or a transformers 5.x one's tokenizers.Tokenizer (its pickled JSON) as tokenizer.json ->
  True; False where it holds none of these."""
  if isinstance(tokenizer, dict) and tokenizer and all(
      name in convert.TOKENIZER_FILES and isinstance(text, str)
      for name, text in tokenizer.items()):
    os.makedirs(out_dir, exist_ok=True)
    for name, text in tokenizer.items():
      with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        f.write(text)
    return True
  state = tokenizer.state if isinstance(tokenizer, Stub) else None
  backend = state.get("_tokenizer") if isinstance(state, dict) else None
  if isinstance(backend, Stub) and isinstance(backend.state, (str, bytes)):
    os.makedirs(out_dir, exist_ok=True)
    text = backend.state.decode() if isinstance(backend.state, bytes) else backend.state
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
      f.write(text)
    return True
  if not (isinstance(state, dict) and isinstance(state.get("encoder"), dict)
          and isinstance(state.get("bpe_ranks"), dict)):
    return False
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(state["encoder"], f, ensure_ascii=False)
  merges = sorted(state["bpe_ranks"].items(), key=lambda item: item[1])
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
  return True


def tokenizer_texts(model_dir):
  """{file name: text} of a CLIP directory's tokenizer files (`convert.TOKENIZER_FILES`):
  what export-release stores as clip_text_tokenizer. Plain strings unpickle under any
  transformers and tokenizers version (a pickled tokenizer object does not: one written by
  transformers 5 cannot be read under the release's 4.26.1 / 0.13.3), and the release's
  evaluation never reads that key."""
  out = {}
  for name in convert.TOKENIZER_FILES:
    path = os.path.join(model_dir, name)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        out[name] = f.read()
  return out


def read_release(path):
  """The released checkpoint -> (params, table, info, clip_state_dict or None, tokenizer
  or None). `external_logic_token_embeddings` is a pickled nn.Embedding(11, rows)."""
  ckpt = _torch_load(path)
  if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt:
    raise errors.UserError(f"{path}: no model_state_dict: not a DCSM release checkpoint")
  params, rows, cols = scorer.from_state_dict(ckpt["model_state_dict"],
                                              f"{path}: model_state_dict")
  weight = stub_tensor(ckpt.get("external_logic_token_embeddings"),
                       f"{path}: external_logic_token_embeddings")
  if weight is None:
    raise errors.UserError(f"{path}: no external_logic_token_embeddings (the functional rows)")
  table = scorer.float32_array(weight)
  # The release's evaluation takes a learned_lookup that is set as its list of functional
  # words (the table's rows, in order) in place of the eleven.
  words = ckpt.get("learned_lookup")
  if words is not None and not (
      isinstance(words, (list, tuple)) and words and len(set(words)) == len(words)
      and all(isinstance(w, str) and w and " " not in w for w in words)):
    raise errors.UserError(f"{path}: learned_lookup is not a list of distinct single words "
                           f"(the functional words): {str(words)[:80]}")
  words = list(words) if words is not None else list(maps.FUNCTIONAL_WORDS)
  if table.shape != (len(words), rows):
    raise errors.UserError(f"{path}: external_logic_token_embeddings has shape {table.shape}, "
                           f"expected ({len(words)}, {rows})")
  info = {"rows": rows, "columns": cols, "column_rule": "release", "functional_rows": True,
          "per_map": False, "source": os.path.abspath(path), "epoch": ckpt.get("epoch")}
  if words != list(maps.FUNCTIONAL_WORDS):
    info["functional_words"] = words
  return params, table, info, ckpt.get("clip_state_dict"), ckpt.get("clip_text_tokenizer")


def clip_heads(state_dict, path, num_heads=None):
  """(text heads, vision heads) of a clip_state_dict: `num_heads` (one value for both or a
  pair), else the `sizes_file` beside `path`, else OpenAI's by width; else a one-line
  UserError naming the flag and the file that would supply them."""
  if num_heads:
    heads = [int(h) for h in num_heads]
    return (heads[0], heads[-1])
  widths = {"text": state_dict["text_model.embeddings.token_embedding.weight"].shape[1],
            "vision": state_dict["vision_model.embeddings.patch_embedding.weight"].shape[0]}
  record = sizes_file(path)
  if os.path.exists(record):
    try:
      with open(record) as f:
        config = json.load(f)
      recorded = {t: (int(config[f"{t}_config"]["hidden_size"]),
                      int(config[f"{t}_config"]["num_attention_heads"])) for t in widths}
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise errors.UserError(f"{record}: unreadable sizes record ({type(e).__name__}: {e})") from e
    for tower, (width, _) in recorded.items():
      if width != widths[tower]:
        raise errors.UserError(f"{record}: {tower} hidden_size={width}, but {path} holds "
                               f"{widths[tower]}: the sizes record is another checkpoint's")
    return recorded["text"][1], recorded["vision"][1]
  heads = {t: OPENAI_HEADS[t].get(w) for t, w in widths.items()}
  unknown = [f"{t} width {widths[t]}" for t, h in heads.items() if h is None]
  if unknown:
    raise errors.UserError(
        f"{path}: clip_state_dict's {' and '.join(unknown)} is no OpenAI CLIP shape and a state "
        f"dict does not record attention heads: pass --num_heads=TEXT,VISION, or keep "
        f"{sizes_file(path)} (export-release writes it) beside the checkpoint")
  return heads["text"], heads["vision"]


def clip_config_from_state_dict(state_dict, heads):
  """transformers.CLIPConfig of an HF CLIPModel state dict: sizes from the shapes, `heads`
  (text, vision) from `clip_heads`, OpenAI's quick_gelu and legacy end-of-text id."""
  shape = lambda k: tuple(state_dict[k].shape)
  layers = lambda tower: len({k.split(".")[3] for k in state_dict
                              if k.startswith(f"{tower}.encoder.layers.")})
  vocab, text_width = shape("text_model.embeddings.token_embedding.weight")
  vision_width, _, patch, _ = shape("vision_model.embeddings.patch_embedding.weight")
  grid = int(round((shape("vision_model.embeddings.position_embedding.weight")[0] - 1) ** 0.5))
  for width, h, tower in ((text_width, heads[0], "text"), (vision_width, heads[1], "vision")):
    if h < 1 or width % h:
      raise errors.UserError(f"--num_heads: {h} {tower} heads do not divide the width {width}")
  return transformers.CLIPConfig(
      text_config=dict(
          hidden_size=text_width, num_hidden_layers=layers("text_model"),
          intermediate_size=shape("text_model.encoder.layers.0.mlp.fc1.weight")[0],
          num_attention_heads=heads[0], vocab_size=vocab,
          max_position_embeddings=shape("text_model.embeddings.position_embedding.weight")[0],
          hidden_act="quick_gelu", eos_token_id=modeling.LEGACY_EOS_TOKEN_ID, bos_token_id=0,
          pad_token_id=1),
      vision_config=dict(
          hidden_size=vision_width, num_hidden_layers=layers("vision_model"),
          intermediate_size=shape("vision_model.encoder.layers.0.mlp.fc1.weight")[0],
          num_attention_heads=heads[1], patch_size=patch,
          image_size=grid * patch, hidden_act="quick_gelu"),
      projection_dim=shape("text_projection.weight")[0])


def import_release(path, out_dir, num_heads=None):
  """Writes out_dir/scorer (a scorer folder) and out_dir/clip (the checkpoint's CLIP as a
  Hugging Face directory, heads by `clip_heads`; its tokenizer, else the OpenAI vocabulary)
  -> (scorer dir, clip dir or None when the checkpoint holds no clip_state_dict)."""
  params, table, info, clip_state, tokenizer = read_release(path)
  clip_dir = None
  if clip_state is not None:
    clip_dir = os.path.join(out_dir, "clip")
    state = {k: scorer.float32_array(v) for k, v in clip_state.items()}
    hf_config = clip_config_from_state_dict(state, clip_heads(state, path, num_heads))
    params_clip = convert.state_dict_to_params(
        {k: v for k, v in state.items() if k not in convert.IGNORED_KEYS},
        modeling.ClipConfig.from_hf(hf_config), source=f"{path}: clip_state_dict")
    convert.export_clip(params_clip, hf_config, clip_dir)
    if not tokenizer_files(tokenizer, clip_dir):
      logging.warning("%s: clip_text_tokenizer holds no CLIP vocabulary (%s); the OpenAI CLIP "
                      "vocabulary is written instead", path,
                      getattr(tokenizer, "qualified", type(tokenizer).__name__))
      clip_tokenizer.write_clip_vocab(clip_dir)
    info["backbone"] = os.path.abspath(clip_dir)
  return save(os.path.join(out_dir, "scorer"), params, table, info), clip_dir


def backbone_differences(hf_config):
  """'key: ours (release: theirs)' for each size of `hf_config` (a CLIPConfig) that is not the
  release's ViT-B/16 (`RELEASE_BACKBONE`): what the release's loader would refuse."""
  config = hf_config.to_dict()
  out = []
  for key, wanted in RELEASE_BACKBONE.items():
    for name, value in (wanted.items() if isinstance(wanted, dict) else [(None, wanted)]):
      found = config[key][name] if name else config[key]
      if found != value:
        out.append(f"{key}.{name or ''}".rstrip(".") + f"={found} (release: {value})")
  return out


def write_release(scorer_dir, model, out_path, any_backbone=False):
  """Writes the release's `.pt` dict of a scorer folder and the CLIP it reads (a directory or
  train workdir) -> a line saying what was written: model_state_dict,
  external_logic_token_embeddings (an nn.Embedding(11, rows)), clip_state_dict (Hugging Face
  CLIPModel keys), clip_text_tokenizer (the model's tokenizer files as {name: text}, which
  any transformers version unpickles: `tokenizer_texts`),
  epoch, learned_lookup (None, or the scorer's own functional words where they are not the
  release's eleven); and `sizes_file` beside it (the CLIP config, whose heads no state dict
  holds). A backbone other than the release's ViT-B/16 (which its code builds before loading
  the state dict) is refused unless `any_backbone`. Read back and compared before it is
  moved to `out_path` (a new file apart from the inputs)."""
  torch = _torch(out_path, "writing")
  record = sizes_file(out_path)
  if os.path.exists(out_path):
    raise errors.UserError(f"--out={out_path}: exists; write the checkpoint to a new file")
  if os.path.exists(record):
    raise errors.UserError(f"--out={out_path}: its sizes file {record} exists; write the "
                           "checkpoint to a new file")
  errors.require_writable_dir(os.path.dirname(os.path.abspath(out_path)),
                             f"folder of --out={out_path}")
  locations.check_apart([("--out", out_path)], [("--scorer", scorer_dir), ("--model", model)])
  params, table, info = load(scorer_dir)
  check_backbone(info, model, scorer_dir)
  clip = loading.load(model)
  if clip.family.name != "clip":  # the release's format is this family's: a CLIPModel
    raise errors.UserError(f"{model}: a {clip.family.name} model; the release's checkpoint "
                           "holds a Hugging Face CLIP (an open_clip model becomes one by "
                           "Model.export(out, hf=True))")
  hf_config = convert.load_hf_config(clip.model_dir)
  vision = hf_config.vision_config
  tokens = (vision.image_size // vision.patch_size) ** 2 + 1
  if table.shape[1] != tokens:
    raise errors.UserError(f"{scorer_dir}: the scorer reads maps of {table.shape[1]} rows; "
                           f"{model} gives {tokens} image tokens")
  other = backbone_differences(hf_config)
  if other and not any_backbone:
    raise errors.UserError(f"{model}: not the release's ViT-B/16 backbone ({'; '.join(other)}): "
                           "the release's code cannot load it; --any_backbone writes it anyway")
  lookup = torch.nn.Embedding(*table.shape)
  with torch.no_grad():
    lookup.weight.copy_(torch.from_numpy(table))
  clip_state = convert.params_to_state_dict({k: v for k, v in clip.params.items()
                                             if k != "root"})
  tensors = lambda arrays: {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
  ckpt = {"model_state_dict": tensors(scorer.to_state_dict(params, info["rows"],
                                                           info["columns"])),
          "external_logic_token_embeddings": lookup,
          "clip_state_dict": tensors(clip_state),
          "clip_text_tokenizer": tokenizer_texts(clip.model_dir),
          "epoch": info.get("epoch"),
          "learned_lookup": info.get("functional_words")}
  partial = out_path + ".partial"
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  try:
    try:
      torch.save(ckpt, partial)
      with open(partial + ".json", "w") as f:
        json.dump(hf_config.to_dict(), f, indent=1)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
      raise errors.UserError(f"--out={out_path}: cannot write the checkpoint there "
                             f"({str(e).strip().splitlines()[0][:120]}); nothing was left") from e
    back_params, back_table, _, back_clip, _ = read_release(partial)
    same = (np.array_equal(back_table, table) and all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back_params),
                                             jax.tree.leaves(params)))
            and all(np.array_equal(back_clip[k].numpy(), v) for k, v in clip_state.items()))
    if not same:
      raise errors.UserError(f"{out_path}: the written checkpoint did not read back the same")
    os.replace(partial + ".json", record)
    os.replace(partial, out_path)
  finally:  # a failed write or read-back leaves no partial file
    for path in (partial, partial + ".json"):
      if os.path.exists(path):
        os.remove(path)
  text, vision = hf_config.text_config, hf_config.vision_config
  return (f"wrote {out_path}: scorer {table.shape[1]} rows x {info['columns']} columns, "
          f"{len(functional_words(info))} functional rows; CLIP text {text.hidden_size} wide "
          f"x {text.num_hidden_layers} layers ({text.num_attention_heads} heads), vision "
          f"{vision.hidden_size} x {vision.num_hidden_layers} ({vision.num_attention_heads} "
          f"heads), {tokens} map rows{'' if not other else ' (not the release backbone)'}; "
          f"its sizes in {record}")
