"""An open_clip model config (`open_clip_config.json`) -> the CLIP towers' config.

open_clip's standard `CLIP` class is OpenAI's CLIP: the same towers as Hugging Face's
`CLIPModel` with sizes given as width, head_width (vision heads = width // head_width),
mlp_ratio and quick_gelu (FAMILIES_SPEC section 3). Every option that changes that
computation (layer scale, attentional pooling, other pool types, timm or HF towers, CoCa,
another tokenizer) is refused in one line naming the file and key: read wrongly it would give
silently wrong features.
"""
import json
import os

import transformers

from hierre_jax.common import errors

CONFIG_FILE = "open_clip_config.json"
# open_clip's defaults of the options that change the computation (CLIPVisionCfg /
# CLIPTextCfg); any other value is refused. Options not listed (patch_dropout, output_tokens,
# cast_dtype, timm_*/hf_* settings of absent towers) do not change inference.
VISION_DEFAULTS = dict(ls_init_value=None, attentional_pool=False, no_ln_pre=False,
                       pos_embed_type="learnable", final_ln_after_pool=False, pool_type="tok",
                       act_kwargs=None, norm_kwargs=None, timm_model_name=None,
                       input_patchnorm=False, global_average_pool=False, proj_type="linear",
                       proj_bias=False, qk_norm=False, scaled_cosine_attn=False,
                       scale_heads=False, scale_attn_inner=False, scale_attn=False,
                       scale_fc=False)
TEXT_DEFAULTS = dict(ls_init_value=None, hf_tokenizer_name=None, tokenizer_mode=None,
                     embed_cls=False, no_causal_mask=False, final_ln_after_pool=False,
                     pool_type="argmax", proj_bias=False, proj_type="linear", act_kwargs=None,
                     norm_kwargs=None, hf_model_name=None, qk_norm=False,
                     scaled_cosine_attn=False, scale_heads=False, scale_attn_inner=False,
                     scale_attn=False, scale_fc=False)
MODEL_DEFAULTS = dict(custom_text=False, multimodal_cfg=None, init_logit_bias=None,
                      nonscalar_logit_scale=False)
# Every other key read: sizes, and options that do not change inference. A key on none of
# these lists (a newer open_clip option) is refused: read wrongly it could change features.
MODEL_KEYS = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "cast_dtype",
              "init_logit_scale"} | set(MODEL_DEFAULTS)
VISION_KEYS = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size",
               "patch_dropout", "output_tokens", "attn_pooler_queries", "attn_pooler_heads",
               "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias",
               "timm_drop", "timm_drop_path"} | set(VISION_DEFAULTS)
TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "pad_id",
             "output_tokens", "tokenizer_kwargs", "hf_model_pretrained", "hf_proj_type",
             "hf_pooler_type"} | set(TEXT_DEFAULTS)
# open_clip's SimpleTokenizer cleans as OpenAI's (`clean="lower"`, its default), which is what
# our cleaned CLIP BPE does; another cleaning ("canonicalize", "whitespace") is refused.
TOKENIZER_KWARGS = ({}, {"clean": "lower"})
LAYER_NORM_EPS = 1e-5
SOT, EOT = 49406, 49407


def read(model_dir):
  """-> (model_cfg, preprocess_cfg) of model_dir/open_clip_config.json: the hub layout
  {"model_cfg", "preprocess_cfg"}, or a bare model config as open_clip ships them
  (`model_configs/<name>.json`, for an `epoch_N.pt`), checked (`check`)."""
  path = os.path.join(model_dir, CONFIG_FILE)
  errors.require_file(path, "open_clip config")
  try:
    with open(path, encoding="utf-8") as f:
      found = json.load(f)
  except ValueError as e:
    raise errors.UserError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(found, dict) or not ("model_cfg" in found or "embed_dim" in found):
    raise errors.UserError(f"{path}: expected {{\"model_cfg\": ..., \"preprocess_cfg\": ...}} "
                           "or an open_clip model config (embed_dim, vision_cfg, text_cfg)")
  model_cfg = found.get("model_cfg", found)
  check(model_cfg, path)
  return model_cfg, dict(found.get("preprocess_cfg") or {})


def check(model_cfg, path):
  """One-line errors.UserError naming the key of `model_cfg` that is not the standard CLIP
  class of open_clip, or a size that is missing."""
  def refuse(key, value, why):
    raise errors.UserError(f"{path}: {key}={value!r}: {why}; hierre_jax reads open_clip's "
                           "standard CLIP class (ViT towers) only")
  for where, cfg, known in (("", model_cfg, MODEL_KEYS),
                            ("vision_cfg.", model_cfg.get("vision_cfg") or {}, VISION_KEYS),
                            ("text_cfg.", model_cfg.get("text_cfg") or {}, TEXT_KEYS)):
    unknown = sorted(set(cfg) - known) if isinstance(cfg, dict) else []
    if unknown:
      refuse(f"{where}{unknown[0]}", cfg[unknown[0]], "an option hierre_jax does not know "
             "(it may change the towers)")
  kwargs = (model_cfg.get("text_cfg") or {}).get("tokenizer_kwargs") or {}
  if kwargs not in TOKENIZER_KWARGS:
    refuse("text_cfg.tokenizer_kwargs", kwargs, "another text cleaning than open_clip's "
           "default (clean='lower'), which is the one implemented")
  for key, default in MODEL_DEFAULTS.items():
    if model_cfg.get(key, default) not in (default, {}):
      refuse(key, model_cfg[key], "not the standard CLIP class (custom text tower, CoCa or a "
             "sigmoid logit bias)")
  for tower, defaults in (("vision_cfg", VISION_DEFAULTS), ("text_cfg", TEXT_DEFAULTS)):
    cfg = model_cfg.get(tower)
    if not isinstance(cfg, dict):
      refuse(tower, cfg, "missing")
    for key, default in defaults.items():
      if cfg.get(key, default) != default:
        refuse(f"{tower}.{key}", cfg[key], f"changes the tower (open_clip's default is "
               f"{default!r})")
  vision = model_cfg["vision_cfg"]
  if not isinstance(vision.get("layers", 12), int):
    refuse("vision_cfg.layers", vision["layers"], "a ResNet image tower")
  size = vision.get("image_size", 224)
  if isinstance(size, (list, tuple)) and len(set(size)) != 1:
    refuse("vision_cfg.image_size", size, "a non-square input")
  if "embed_dim" not in model_cfg:
    refuse("embed_dim", None, "missing")


def image_size(model_cfg):
  size = model_cfg["vision_cfg"].get("image_size", 224)
  return int(size[0] if isinstance(size, (list, tuple)) else size)


def hf_config(model_cfg):
  """The `transformers.CLIPConfig` of the same towers (what `CLIPModel` and our CLIP towers
  read)."""
  v, t = model_cfg["vision_cfg"], model_cfg["text_cfg"]
  act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
  v_width, t_width = v.get("width", 768), t.get("width", 512)
  text = dict(hidden_size=t_width, intermediate_size=int(t_width * t.get("mlp_ratio", 4.0)),
              num_hidden_layers=t.get("layers", 12), num_attention_heads=t.get("heads", 8),
              max_position_embeddings=t.get("context_length", 77),
              vocab_size=t.get("vocab_size", 49408), hidden_act=act,
              layer_norm_eps=LAYER_NORM_EPS, bos_token_id=SOT, eos_token_id=EOT,
              pad_token_id=t.get("pad_id", 0))
  vision = dict(hidden_size=v_width, intermediate_size=int(v_width * v.get("mlp_ratio", 4.0)),
                num_hidden_layers=v.get("layers", 12),
                num_attention_heads=v_width // v.get("head_width", 64),
                image_size=image_size(model_cfg), patch_size=v.get("patch_size", 16),
                hidden_act=act, layer_norm_eps=LAYER_NORM_EPS)
  return transformers.CLIPConfig(text_config=text, vision_config=vision,
                                 projection_dim=model_cfg["embed_dim"])


def from_hf_sizes(text, vision, projection_dim):
  """An open_clip model config of towers given in Hugging Face config keys (hidden_size,
  intermediate_size, num_hidden_layers, num_attention_heads, ...; `random_init`'s form)."""
  act = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
  if len(act) != 1 or not act <= {"quick_gelu", "gelu"}:
    raise errors.UserError(f"hidden_act {sorted(act)}: open_clip towers share quick_gelu or "
                           "gelu")
  ratio = lambda t: t["intermediate_size"] / t["hidden_size"]
  return dict(
      embed_dim=projection_dim, quick_gelu=act == {"quick_gelu"},
      vision_cfg=dict(image_size=vision.get("image_size", 224), layers=vision["num_hidden_layers"],
                      width=vision["hidden_size"], patch_size=vision.get("patch_size", 32),
                      head_width=vision["hidden_size"] // vision["num_attention_heads"],
                      mlp_ratio=ratio(vision)),
      text_cfg=dict(context_length=text.get("max_position_embeddings", 77),
                    vocab_size=text.get("vocab_size", 49408), width=text["hidden_size"],
                    heads=text["num_attention_heads"], layers=text["num_hidden_layers"],
                    mlp_ratio=ratio(text)))
