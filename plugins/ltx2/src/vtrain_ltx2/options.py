"""The configuration keys the LTX-2 family declares. All start with ``ltx2_`` so they never clash with
another family's keys; the core's keys (lora_rank, validation_*, flow_* ...) are consumed, not redeclared."""

from __future__ import annotations

from typing import Any

FAMILY = "ltx2"
MODALITY_MODES = ("generated", "frozen", "off")

# Named LoRA target groups, as regexes matched against the whole module name (peft's ``re.fullmatch``).
# A regex string instead of a list, because peft collapses lists of 20+ names into bare suffixes.
_PROJ = r"(to_q|to_k|to_v|to_out\.0)"
LORA_TARGET_GROUPS: dict[str, str] = {
    "video_attention": rf"transformer_blocks\.\d+\.(attn1|attn2)\.{_PROJ}",
    "audio_attention": rf"transformer_blocks\.\d+\.(audio_attn1|audio_attn2)\.{_PROJ}",
    "cross_modal_attention": rf"transformer_blocks\.\d+\.(audio_to_video_attn|video_to_audio_attn)\.{_PROJ}",
    "video_ff": r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
    "audio_ff": r"transformer_blocks\.\d+\.audio_ff\.net\.(0\.proj|2)",
    "audio_projections": r"audio_proj_in|audio_proj_out|audio_caption_projection\.linear_[12]",
}
# What joins the default targets when the data has sound (SimpleTuner's additional ltxvideo2 audio targets).
AUDIO_DEFAULT_GROUPS = ("audio_projections", "audio_ff")
LORA_TARGET_ALIASES: dict[str, tuple[str, ...]] = {
    "attention": ("video_attention", "audio_attention", "cross_modal_attention"),
    "feed_forward": ("video_ff", "audio_ff"),
    "all": tuple(LORA_TARGET_GROUPS),
}

OPTION_KEYS = (
    "model_flavour",
    "ltx2_transformer_path",
    "ltx2_vae_path",
    "ltx2_audio_vae_path",
    "ltx2_text_encoder_path",
    "ltx2_text_max_length",
    "ltx2_lora_targets",
    "ltx2_video",
    "ltx2_audio",
    "ltx2_video_loss_weight",
    "ltx2_audio_loss_weight",
    "ltx2_i2v_probability",
    "ltx2_extension_frames",
    "ltx2_extension_from",
    "ltx2_ic_lora",
    "ltx2_validation_image",
)


def declare_options(registry: Any) -> None:
    """Declare every ltx2 key (the catalog lists the ``ltx2_`` prefix for ``vtrain-ltx2``)."""
    from vtrain_ltx2.flavours import CHOICES

    own = {"families": (FAMILY,), "category": "ltx2"}
    registry.add("model_flavour", "str", None,
                 "SimpleTuner's LTX-2 variant: dev (default), dev-fp8, dev-fp4 (refused: NVFP4), 2.3-dev, 2.3-distilled, "
                 "2.5-dev, 2.5-distilled (2 / 2.0 / 2.5 as SimpleTuner reads them). It picks the combined single-file "
                 "checkpoint when pretrained_model_name_or_path is a .safetensors file, a folder holding one or a hub "
                 "repo holding one, the hub repo when that is unset, and must match the loaded layout.",
                 choices=CHOICES, **own)
    registry.add("ltx2_transformer_path", "str", None,
                 "Folder (diffusers layout, with or without a transformer/ subfolder) or single-file checkpoint of the "
                 "LTX-2 transformer; unset: pretrained_model_name_or_path.", **own)
    registry.add("ltx2_vae_path", "str", None,
                 "Folder or single-file checkpoint of the video VAE; unset: pretrained_model_name_or_path.", **own)
    registry.add("ltx2_audio_vae_path", "str", None,
                 "Folder or single-file checkpoint of the audio VAE (and vocoder folder's parent); unset: "
                 "pretrained_model_name_or_path.", **own)
    registry.add("ltx2_text_encoder_path", "str", None,
                 "Folder of the Gemma text encoder and tokenizer (text_encoder/, tokenizer/); unset: "
                 "pretrained_model_name_or_path.", **own)
    registry.add("ltx2_text_max_length", "int", 1024,
                 "Gemma prompt length in tokens, left-padded (the pipeline's max_sequence_length default); must be a "
                 "multiple of the connectors' learnable registers.", minimum=1, maximum=4096, **own)
    registry.add("ltx2_lora_targets", "list", ["attention"],
                 "LoRA target groups (comma list): video_attention, audio_attention, cross_modal_attention, video_ff, "
                 "audio_ff, audio_projections (audio input/output and caption projections), or the aliases attention, "
                 "feed_forward, all. Matched exactly (regex), never by suffix. Left unset, audio_projections and "
                 "audio_ff join the default when the data has sound (as SimpleTuner does); peft_lora_target_modules "
                 "replaces the groups.",
                 **own)
    registry.add("ltx2_video", "str", "generated",
                 "The video modality: generated (noised, in the loss), frozen (clean, sigma 0, out of the loss, still "
                 "attended to: audio-to-video's inverse, v2a) or off (not fed; the audio stream trains alone).",
                 choices=MODALITY_MODES, **own)
    registry.add("ltx2_audio", "str", "generated",
                 "The audio modality: generated, frozen (clean audio conditions the video: a2v) or off (video-only "
                 "training; clips without sound train this way automatically).", choices=MODALITY_MODES, **own)
    registry.add("ltx2_video_loss_weight", "float", 1.0, "Weight of the video flow-matching term.", minimum=0, **own)
    registry.add("ltx2_audio_loss_weight", "float", 1.0, "Weight of the audio flow-matching term.", minimum=0, **own)
    registry.add("ltx2_i2v_probability", "float", 0.1,
                 "Image-to-video: the probability that a sample's first latent frame is given clean (per-token "
                 "timestep 0, out of the loss); 0.1 as ltx-trainer's first_frame_conditioning_p, so one LoRA serves "
                 "text- and image-to-video (SimpleTuner's ltx2_first_frame_conditioning_probability, default 0 "
                 "there). Only while the video is generated.", minimum=0, maximum=1,
                 aliases=("ltx2_first_frame_conditioning_probability",), **own)
    registry.add("ltx2_extension_frames", "int", 0,
                 "Video extension: this many latent frames at ltx2_extension_from are given clean (timestep 0, out "
                 "of the loss); the model learns to continue them.", minimum=0, **own)
    registry.add("ltx2_extension_from", "str", "start",
                 "Which end of the clip the clean extension frames come from: start (continue forwards) or end "
                 "(extend backwards).", choices=("start", "end"), **own)
    registry.add("ltx2_ic_lora", "bool", False,
                 "IC-LoRA: every sample carries reference_latents (a paired reference clip, possibly at a lower "
                 "resolution) appended as clean tokens with matched positions, never noised and out of the loss.",
                 **own)
    registry.add("ltx2_validation_image", "path", None,
                 "Conditioning image for image-to-video validation; unset: text-to-audio+video validation.", **own)
