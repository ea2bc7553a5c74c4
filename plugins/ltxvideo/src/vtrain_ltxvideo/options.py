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
    registry.add("i2v_conditioning_probability", "float", 1.0,
                 "For samples of an is_i2v dataset, the probability that the first latent frame is given clean as "
                 "the condition (and left out of the loss); the rest train as text-to-video.",
                 minimum=0, maximum=1, **own)
    registry.add("validation_image", "path", None,
                 "Conditioning image for image-to-video validation; unset: the first frame of a training clip "
                 "when i2v training is on, otherwise text-to-video validation.", **own)
