"""SimpleTuner's LTX-2 (``ltxvideo2``) settings that this family expresses with other keys, and what to use
instead: the family's ``simpletuner_refusals`` trait (a value other than SimpleTuner's default is refused
with this fix; ``docs/differences-from-simpletuner.md`` lists them)."""

from __future__ import annotations

_CONDITIONS = ("vtrain's ltx2 conditions are ltx2_i2v_probability (a clean first frame), ltx2_extension_frames "
               "with ltx2_extension_from (clean frames at the start or the end) and ltx2_ic_lora (a reference "
               "clip, scaled by the dataset's conditioning_downscale)")
_SINGLE_STAGE = "vtrain validates with the single-stage LTX2Pipeline"

SIMPLETUNER_REFUSALS: dict[str, str] = {
    "ltx2_intrinsic_conditioning": _CONDITIONS,
    "ltx2_prefix_conditioning_probability": _CONDITIONS, "ltx2_prefix_conditioning_frames": _CONDITIONS,
    "ltx2_suffix_conditioning_probability": _CONDITIONS, "ltx2_suffix_conditioning_frames": _CONDITIONS,
    "ltx2_mask_conditioning_probability": _CONDITIONS,
    "ltx2_reference_spatial_scale_factor": "set conditioning_downscale in the dataset of an ltx2_ic_lora run",
    "ltx2_reference_temporal_scale_factor": "vtrain's IC-LoRA references keep the target's frame count",
    "ltx2_validation_pipeline_mode": f"{_SINGLE_STAGE} (no spatial upscaler pass)",
    "ltx2_validation_spatial_upsampler_model": _SINGLE_STAGE,
    "ltx2_validation_spatial_upsampler_filename": _SINGLE_STAGE,
    "ltx2_validation_audio_guidance": "validation uses validation_guidance for both the video and the audio stream",
    "validation_audio_only": "set ltx2_video to off to train and validate the audio stream alone",
    "validation_ltx2_video_conditioning": "use ltx2_validation_image for image-to-video validation",
}
