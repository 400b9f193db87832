"""Random-weight CLIP checkpoints in Hugging Face format, built without torch or a download.

Used by the embedded demo, by training from scratch and by tests: the result is
loaded back through the same code path as any real checkpoint.
"""
import jax
import transformers

from hierre_jax.models.clip import convert
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import tokenizer

# The text/vision shape of OpenAI CLIP ViT-B/32 (openai/clip-vit-base-patch32).
VIT_B32 = dict(
    text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, eos_token_id=2,
                     bos_token_id=0, pad_token_id=1, hidden_act="quick_gelu"),
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, image_size=224, patch_size=32,
                       hidden_act="quick_gelu"),
    projection_dim=512)


def hf_config(text, vision, projection_dim):
  """transformers.CLIPConfig from plain dicts of HF config keys."""
  return transformers.CLIPConfig(text_config=dict(text), vision_config=dict(vision),
                                 projection_dim=projection_dim)


def write_random_clip(out_dir, text, vision, projection_dim, seed=0):
  """Writes a random CLIPModel (config, safetensors, OpenAI tokenizer files) to `out_dir`."""
  config = hf_config(text, vision, projection_dim)
  params = modeling.init_params(modeling.ClipConfig.from_hf(config), jax.random.key(seed))
  convert.export_clip(params, config, out_dir)
  tokenizer.write_clip_vocab(out_dir)
  return out_dir
