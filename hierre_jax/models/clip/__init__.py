"""CLIP (OpenAI and OpenCLIP checkpoints in Hugging Face's `CLIPModel` format)."""
from hierre_jax.models import family
from hierre_jax.models.clip import convert
from hierre_jax.models.clip import modeling
from hierre_jax.models.clip import preprocessing
from hierre_jax.models.clip import random_init
from hierre_jax.models.clip import tokenizer


def encoders(config, remat=False):
  model = modeling.CLIP(config, remat)
  apply = lambda method: lambda params, *x: model.apply({"params": params}, *x, method=method)
  return family.Encoders(text=apply(modeling.CLIP.encode_text),
                         packed_text=apply(modeling.CLIP.encode_packed_text),
                         image=apply(modeling.CLIP.encode_image),
                         text_tokens=apply(modeling.CLIP.encode_text_tokens),
                         image_tokens=apply(modeling.CLIP.encode_image_tokens))


FAMILY = family.Family(
    name="clip", architectures=("CLIPModel",),
    text_groups=("text_model", "text_projection"),
    text_params=("text_model", "text_projection", "logit_scale"),  # setup declares logit_scale
    image_groups=("vision_model", "visual_projection"),
    model_files=convert.TOKENIZER_FILES, max_length=tokenizer.MAX_LENGTH,
    load=convert.load_clip, load_hf_config=convert.load_hf_config,
    read_config=lambda model_dir, scan_layers: modeling.ClipConfig.from_hf(
        convert.load_hf_config(model_dir), scan_layers),
    export=convert.export_clip,
    write_random=random_init.write_random_clip, load_tokenizer=tokenizer.load_tokenizer,
    preprocessing=lambda model_dir, config: preprocessing.Preprocessing.from_model_dir(
        model_dir, config.vision.image_size),
    encoders=encoders, has_stacked_layers=convert.has_stacked_layers,
    pool_index=lambda config, ids: modeling.end_of_text_position(ids, config.text.eos_token_id),
    log_logit_scale=lambda params: params["logit_scale"])
