"""The configuration keys the LTX-Video family declares (core keys are consumed, not redeclared)."""

from __future__ import annotations

from typing import Any

FAMILY = "ltxvideo"

LORA_TARGETS: dict[str, tuple[str, ...]] = {
    # peft matches these as suffixes of module names, so attn1 (self) and attn2 (cross) both match.
    "attention": ("to_q", "to_k", "to_v", "to_out.0"),
    "attention+ffn": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    "all": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out",
            "caption_projection.linear_1", "caption_projection.linear_2", "time_embed.linear"),
}

OPTION_KEYS = (
    "pretrained_vae_model_name_or_path",
    "pretrained_transformer_model_name_or_path",
    "pretrained_transformer_subfolder",
    "tokenizer_max_length",
    "lora_target",
    "i2v_conditioning_probability",
    "validation_image",
    "ltx_train_mode",
    "ltx_protect_first_frame",
    "ltx_partial_noise_fraction",
    "ltx_temporal_positions",
    "validation_decode_timestep",
    "validation_decode_noise_scale",
    "vae_latent_sampling",
)

#: The reference trainers' defaults (LTX-Video-Trainer, finetrainers), applied when a config sets none of the keys.
RECOMMENDED_DEFAULTS = (
    ("flow_schedule_shift", "flow_schedule_auto_shift"), {"flow_schedule_auto_shift": True},
    "LTX-Video-Trainer's resolution-dependent shifted logit-normal timesteps",
), (
    ("grad_clip_method", "max_grad_norm"), {"grad_clip_method": "norm", "max_grad_norm": 1.0},
    "LTX-Video-Trainer and finetrainers clip the global gradient norm at 1.0",
)


def declare_options(registry: Any) -> None:
    """Declare every ltxvideo key (kept equal to the catalog entry for ``vtrain-ltxvideo``)."""
    own = {"families": (FAMILY,), "category": "ltxvideo"}
    registry.add("pretrained_vae_model_name_or_path", "str", None,
                 "Hub id or local folder of the VAE (its vae/ subfolder); unset: pretrained_model_name_or_path.", **own)
    registry.add("pretrained_transformer_model_name_or_path", "str", None,
                 "Hub id, local folder or single-file checkpoint of the transformer, for fine-tuned models "
                 "published without the full pipeline layout; unset: pretrained_model_name_or_path.", **own)
    registry.add("pretrained_transformer_subfolder", "str", "transformer",
                 "Subfolder that holds the transformer weights; none = the weights sit at the root.", **own)
    registry.add("tokenizer_max_length", "int", 128,
                 "T5 sequence length: prompts are padded/truncated to this many tokens (the pipeline's default is 128).",
                 minimum=1, maximum=1024, **own)
    registry.add("lora_target", "str", "attention",
                 "Which layers get LoRA: attention (self/cross q,k,v,out), attention+ffn (plus the feed-forward), "
                 "all (plus the input/output/caption/timestep projections).", choices=tuple(LORA_TARGETS), **own)
    registry.add("i2v_conditioning_probability", "float", 0.1,
                 "For samples of an is_i2v dataset, the probability that the first latent frame is given clean as "
                 "the condition (and left out of the loss); the rest train as text-to-video. 0.1 as in "
                 "LTX-Video-Trainer and SimpleTuner (ltx_i2v_prob).",
                 minimum=0, maximum=1, aliases=("ltx_i2v_prob",), **own)
    registry.add("ltx_train_mode", "str", "i2v",
                 "SimpleTuner's key: whether video datasets that do not set video.is_i2v are image-to-video "
                 "datasets (i2v: their samples condition the first frame with i2v_conditioning_probability) "
                 "or text-to-video (t2v).", choices=("i2v", "t2v"), **own)
    registry.add("ltx_protect_first_frame", "bool", False,
                 "Condition the first latent frame of every i2v-dataset sample (probability 1), as SimpleTuner's "
                 "key does; false: i2v_conditioning_probability decides.", **own)
    registry.add("ltx_partial_noise_fraction", "float", 0.05,
                 "SimpleTuner's partial noising of the conditioned first frame. vtrain conditions with a clean frame "
                 "at timestep 0 (LTX-Video-Trainer's and the i2v pipeline's convention), so only SimpleTuner's "
                 "default 0.05 or 0 (clean) is accepted.", minimum=0, maximum=1, **own)
    registry.add("ltx_temporal_positions", "str", "auto",
                 "Temporal RoPE positions: causal (0.9.5 and later, LTXConditionPipeline, ComfyUI: latent frame "
                 "positions shifted by the causal first frame and divided by the frame rate), scaled (0.9.0/0.9.1, "
                 "LTXPipeline: rope_interpolation_scale only), or auto (read from the checkpoint).",
                 choices=("auto", "causal", "scaled"), **own)
    registry.add("validation_decode_timestep", "float", 0.05,
                 "decode_timestep for VAEs with timestep_conditioning (0.9.1 and later), diffusers' recommendation.",
                 minimum=0, maximum=1, **own)
    registry.add("validation_decode_noise_scale", "float", 0.025,
                 "decode_noise_scale for VAEs with timestep_conditioning, diffusers' recommendation.",
                 minimum=0, maximum=1, **own)
    registry.add("vae_latent_sampling", "str", "sample",
                 "sample: cache the VAE posterior's mean and std and draw a fresh latent each time a sample is "
                 "used (finetrainers, the VAE's latent_dist.sample()); mode: always the posterior mean.",
                 choices=("sample", "mode"), **own)
    registry.add("validation_image", "path", None,
                 "Conditioning image for image-to-video validation; unset: the first frame of a training clip "
                 "when i2v training is on, otherwise text-to-video validation.", **own)
