"""Configure-time checks of ltxvideo settings (every problem is reported at once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector

SPATIAL_ALIGNMENT = 32
FRAME_FACTOR = 8


def is_valid_frame_count(frames: int) -> bool:
    """LTX-Video's VAE takes 8k+1 frames (1, 9, 17, ... 121)."""
    return frames >= 1 and (frames - 1) % FRAME_FACTOR == 0


def round_frame_count(frames: int) -> int:
    """The rounding rule: the largest 8k+1 that is not more than ``frames`` (trailing frames are dropped)."""
    if frames < 1:
        raise ValueError(f"a clip needs at least 1 frame, got {frames}")
    return (frames - 1) // FRAME_FACTOR * FRAME_FACTOR + 1


def frames_for_clip(available: int, requested: int) -> int:
    """How many frames to take from a clip of ``available`` frames when ``requested`` are wanted.

    ``requested`` is rounded down to 8k+1; a clip shorter than that is an error that says so.
    """
    wanted = round_frame_count(requested)
    if available < wanted:
        raise ValueError(f"the clip has {available} frames but {wanted} are needed (num_frames={requested} rounded "
                         f"down to LTX-Video's 8k+1 rule); lower num_frames or drop clips shorter than {wanted} frames")
    return wanted


def check_config(config: ResolvedConfig, problems: ProblemCollector) -> None:
    """Add a problem for each ltxvideo setting that cannot work."""
    if not config.pretrained_model_name_or_path:
        # the T5 text encoder, tokenizer and scheduler (and a single-file transformer's architecture) always come
        # from the base model, even when the transformer and the VAE are given separately
        problems.add("pretrained_model_name_or_path", "the ltxvideo family needs a base model (the text encoder, "
                     "tokenizer and scheduler are loaded from it)",
                     "set pretrained_model_name_or_path to Lightricks/LTX-Video-0.9.5 or a local diffusers folder "
                     "(vtrain ltxvideo make-tiny DIR writes a tiny one)")
    if config.model_type == "full" and config.explicitly_set("lora_target"):
        problems.add("lora_target", "model_type=full trains every weight: lora_target has no effect",
                     "remove lora_target or use model_type=lora")
    if config.model_type == "lora" and config.lora_alpha == 0:
        problems.add("lora_alpha", "lora_alpha=0 scales the adapter's output (and its gradients) to zero: nothing would train",
                     "remove lora_alpha (it then equals lora_rank) or set a positive value")
    if config.lora_type == "lycoris" and config.explicitly_set("lora_target"):
        problems.add("lora_target", "with lora_type=lycoris the targets come from lycoris_config (apply_preset)",
                     "remove lora_target, or set target_module/target_name in the lycoris_config apply_preset")
    for size in config.validation_resolution:
        parts = size.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            width, height = int(parts[0]), int(parts[1])
            if width % SPATIAL_ALIGNMENT or height % SPATIAL_ALIGNMENT or not width or not height:
                problems.add("validation_resolution",
                             f"{size}: LTX-Video needs width and height that are multiples of {SPATIAL_ALIGNMENT}",
                             f"use e.g. {max(32, width // 32 * 32)}x{max(32, height // 32 * 32)}")
    if config.ltx_partial_noise_fraction not in (0.0, 0.05):
        problems.add("ltx_partial_noise_fraction",
                     f"{config.ltx_partial_noise_fraction:g}: vtrain conditions the first frame clean at timestep 0 "
                     "(LTX-Video-Trainer's and the image-to-video pipeline's convention), not partially noised",
                     "remove the key (or use 0 or SimpleTuner's default 0.05, both read as a clean frame)")
    frames = config.validation_num_video_frames
    if frames is not None and not is_valid_frame_count(frames):
        problems.add("validation_num_video_frames", f"{frames} frames: LTX-Video needs 8k+1 frames (1, 9, 17, ... 121)",
                     f"use {round_frame_count(frames)} or {round_frame_count(frames) + FRAME_FACTOR}")
    if config.validation_image and not Path(config.validation_image).is_file():
        problems.add("validation_image", f"file not found: {config.validation_image}",
                     "check the path (relative to the current directory)")
    subfolder = config.pretrained_transformer_subfolder
    path = config.pretrained_transformer_model_name_or_path
    if path and Path(path).is_file() and subfolder and subfolder.lower() != "none" and \
            config.explicitly_set("pretrained_transformer_subfolder"):
        problems.add("pretrained_transformer_subfolder",
                     f"pretrained_transformer_model_name_or_path is a single file ({path}): a subfolder does not apply",
                     "remove pretrained_transformer_subfolder or set it to none")
