"""Configure-time checks of LTX-2 settings: modality modes, conditions against the data, sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltx2.options import LORA_TARGET_ALIASES, LORA_TARGET_GROUPS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector

SPATIAL_ALIGNMENT = 32
FRAME_FACTOR = 8


def _registers(config: ResolvedConfig) -> int | None:
    """The connectors' learnable-register count from the local config file, when there is one."""
    base = Path(str(config.pretrained_model_name_or_path or ""))
    for folder in (Path(str(config.get("ltx2_text_encoder_path") or "")) / "connectors", base / "connectors"):
        path = folder / "config.json"
        if path.is_file():
            try:
                settings = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return int(settings.get("video_connector_num_learnable_registers") or 0) or None
    return None


def _datasets(config: ResolvedConfig) -> list[dict[str, Any]] | None:
    value = config.get("data_backend_config")
    if not value:
        return None
    try:
        entries = json.loads(Path(value).read_text(encoding="utf-8")) if isinstance(value, str) else value
    except (OSError, ValueError):
        return None  # the data layer reports an unreadable file itself
    return [e for e in entries if isinstance(e, dict) and not e.get("disabled")] if isinstance(entries, list) else None


def check_modes(config: ResolvedConfig, problems: ProblemCollector) -> None:
    video, audio = config.ltx2_video, config.ltx2_audio
    if "generated" not in (video, audio):
        problems.add("ltx2_video", f"ltx2_video={video} and ltx2_audio={audio}: no modality is generated, nothing would train",
                     "set ltx2_video or ltx2_audio to generated (a2v: audio frozen; v2a: video frozen)")
    conditions = [key for key, on in (("ltx2_i2v_probability", config.ltx2_i2v_probability > 0
                                       and config.explicitly_set("ltx2_i2v_probability")),
                                      ("ltx2_extension_frames", config.ltx2_extension_frames > 0),
                                      ("ltx2_ic_lora", config.ltx2_ic_lora)) if on]
    for key in conditions:
        if video != "generated":
            problems.add(key, f"{key} conditions the generated video, but ltx2_video is {video}",
                         f"remove {key} or set ltx2_video to generated")
    if config.ltx2_ic_lora:
        entries = _datasets(config)
        videos = [e for e in entries or [] if e.get("dataset_type", "image") in ("video", "image")]
        missing = [str(e.get("id")) for e in videos if not e.get("conditioning_data_dir")]
        if entries is not None and (missing or not videos):
            problems.add("ltx2_ic_lora", "IC-LoRA trains on paired reference clips, but dataset(s) "
                         f"{', '.join(missing) or '(none)'} have none",
                         'add "conditioning_data_dir": "<folder of reference clips with the same file names>" to each '
                         "video dataset in data_backend_config, or set ltx2_ic_lora to false")
    if config.explicitly_set("ltx2_extension_from") and config.ltx2_extension_frames == 0:
        problems.add("ltx2_extension_from", "has no effect while ltx2_extension_frames is 0",
                     "set ltx2_extension_frames (latent frames given clean) or remove ltx2_extension_from")


def check_config(config: ResolvedConfig, problems: ProblemCollector) -> None:
    """Every ltx2 check; problems are collected, never raised."""
    from vtrain_ltx2.flavours import flavour_of

    flavour = flavour_of(config)
    if flavour.refusal:
        problems.add("model_flavour", f"vtrain cannot load the {flavour.name} flavour: {flavour.refusal}",
                     "use model_flavour dev (bf16) and quantise it with base_model_precision (int8-torchao, fp8-torchao)")
    check_modes(config, problems)
    for name in config.ltx2_lora_targets:
        if name not in LORA_TARGET_GROUPS and name not in LORA_TARGET_ALIASES:
            problems.add("ltx2_lora_targets", f"unknown target group {name!r}",
                         f"use any of {', '.join([*LORA_TARGET_GROUPS, *LORA_TARGET_ALIASES])}")
    if config.model_type == "full" and config.explicitly_set("ltx2_lora_targets"):
        problems.add("ltx2_lora_targets", "model_type=full trains every weight: ltx2_lora_targets has no effect",
                     "remove ltx2_lora_targets or use model_type=lora")
    if config.lora_type == "lycoris" and config.explicitly_set("ltx2_lora_targets"):
        problems.add("ltx2_lora_targets", "with lora_type=lycoris the targets come from lycoris_config (apply_preset)",
                     "remove ltx2_lora_targets, or set target_module/target_name in the lycoris_config apply_preset")
    if config.model_type == "lora" and config.lora_alpha == 0:
        problems.add("lora_alpha", "lora_alpha=0 scales the adapter to zero: nothing would train",
                     "remove lora_alpha (it then equals lora_rank) or set a positive value")
    registers = _registers(config)
    if registers and config.ltx2_text_max_length % registers:
        length = config.ltx2_text_max_length
        problems.add("ltx2_text_max_length", f"{length} is not a multiple of the connectors' {registers} learnable registers",
                     f"use {max(registers, length // registers * registers)}")
    for size in config.validation_resolution:
        parts = size.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            width, height = int(parts[0]), int(parts[1])
            if width % SPATIAL_ALIGNMENT or height % SPATIAL_ALIGNMENT or not width or not height:
                problems.add("validation_resolution", f"{size}: LTX-2 needs multiples of {SPATIAL_ALIGNMENT}",
                             f"use e.g. {max(32, width // 32 * 32)}x{max(32, height // 32 * 32)}")
    frames = config.validation_num_video_frames
    if frames is not None and (frames - 1) % FRAME_FACTOR:
        low = (frames - 1) // FRAME_FACTOR * FRAME_FACTOR + 1
        problems.add("validation_num_video_frames", f"{frames} frames: LTX-2 needs 8k+1 frames (9, 17, ... 121)",
                     f"use {low} or {low + FRAME_FACTOR}")
    if config.ltx2_validation_image and not Path(config.ltx2_validation_image).is_file():
        problems.add("ltx2_validation_image", f"file not found: {config.ltx2_validation_image}",
                     "check the path (relative to the current directory)")


def _sample_streams(dataset: Any) -> list[tuple[str, bool, bool]]:
    """(name, has sound, has reference) per distinct sample; cheap for the core's cached dataset."""
    parts = getattr(dataset, "parts", None)
    if parts is not None:
        from vtrain.data.spec import AUDIO_EXTENSIONS

        # a sample of an audio dataset (a sound file) is its sound; a video sample has it beside (audio_key)
        return [(str(s.path), s.audio_key is not None or Path(s.path).suffix.lower() in AUDIO_EXTENSIONS,
                 getattr(s, "reference_key", None) is not None) for part in parts for s in part.samples]
    out = []
    for index in range(len(dataset)):
        item = dataset[index]
        out.append((f"sample {index}", "audio_latents" in item, "reference_latents" in item))
    return out


def check_data(config: ResolvedConfig, dataset: Any) -> None:
    """The modes against the data, once it is built: raise :class:`ConfigError` naming the samples and the fix.

    Clips without sound are fine while audio is generated alongside generated video (they train video-only),
    but a2v (audio frozen), v2a (video frozen) and audio-only need sound in every clip, and IC-LoRA needs a
    reference for every clip.
    """
    from vtrain.errors import ConfigError, Problem

    streams = _sample_streams(dataset)
    problems = []
    needs_sound = config.ltx2_audio == "frozen" or (config.ltx2_audio == "generated" and config.ltx2_video != "generated")
    silent = [name for name, sound, _ in streams if not sound]
    if needs_sound and silent:
        mode = "a2v (ltx2_audio frozen)" if config.ltx2_audio == "frozen" else \
            f"ltx2_video {config.ltx2_video} with generated audio"
        problems.append(Problem("ltx2_audio", f"{mode} needs sound in every clip; {len(silent)} have none: "
                                f"{', '.join(silent[:5])}", "add an audio track to those clips or remove them from the dataset"))
    if config.ltx2_ic_lora:
        missing = [name for name, _, reference in streams if not reference]
        if missing:
            problems.append(Problem("ltx2_ic_lora", f"IC-LoRA needs a reference clip for every sample; {len(missing)} "
                                    f"have none: {', '.join(missing[:5])}",
                                    'set "conditioning_data_dir" on the video dataset (reference clips with the same '
                                    "file names), or set ltx2_ic_lora to false"))
    if problems:
        raise ConfigError(problems)
