"""Making the LTX-2 transformer trainable: peft LoRA on named target groups, LyCORIS, or full fine-tuning.

LoRA targets are one regex (peft ``re.fullmatch`` over full module names) built from the named groups of
``ltx2_lora_targets``: a list of 20+ names would be collapsed by peft into bare suffixes, and a suffix
such as ``to_q`` also matches the audio and cross-modal attention that a "video attention" LoRA must
leave alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltx2.options import AUDIO_DEFAULT_GROUPS, LORA_TARGET_ALIASES, LORA_TARGET_GROUPS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

PROBED_CLIPS = 16  # clips of a video dataset looked at for a sound stream
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpeg", ".mpg")
LYCORIS_BLOCKS = ("LTX2VideoTransformerBlock",)  # what LyCORIS wraps (its presets do not know this block class)


def expand_groups(names: list[str] | tuple[str, ...]) -> list[str]:
    """Group names with aliases expanded, in declaration order, without duplicates."""
    groups: list[str] = []
    for name in names:
        for group in LORA_TARGET_ALIASES.get(name, (name,)):
            if group not in LORA_TARGET_GROUPS:
                raise ValueError(f"unknown LoRA target group {name!r}")
            if group not in groups:
                groups.append(group)
    return groups


def target_regex(names: list[str] | tuple[str, ...]) -> str:
    """One regex matching exactly the modules of the named groups."""
    return "|".join(f"(?:{LORA_TARGET_GROUPS[group]})" for group in expand_groups(names))


def _has_sound(folder: Path) -> bool:
    from vtrain.data.media_io import MediaError, probe_audio

    clips = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)[:PROBED_CLIPS]
    for clip in clips:
        try:
            probe_audio(clip)
            return True
        except (MediaError, OSError):
            continue
    return False


def data_has_audio(config: ResolvedConfig) -> bool:
    """Whether the run trains on sound: ``ltx2_audio`` is not off, and the data config holds an audio dataset or
    a video dataset (not opted out with ``"audio": {"auto_split": false}``) whose clips carry a sound stream
    (the first :data:`PROBED_CLIPS` of each are probed)."""
    from vtrain_ltx2.checks import _datasets

    if config.ltx2_audio == "off":
        return False
    for entry in _datasets(config) or []:
        kind = entry.get("dataset_type", "image")
        audio = entry.get("audio") if isinstance(entry.get("audio"), dict) else {}
        if kind == "audio":
            return True
        folder = entry.get("instance_data_dir")
        if kind == "video" and audio.get("auto_split", True) is not False and folder and Path(folder).is_dir() \
                and _has_sound(Path(folder)):
            return True
    return False


def lora_targets(config: ResolvedConfig) -> tuple[str | list[str], str]:
    """(peft ``target_modules``, how they were chosen): ``peft_lora_target_modules`` when set; else the regex of
    ``ltx2_lora_targets``, joined by the audio groups when that key is left unset and the data has sound."""
    from vtrain.lora_targets import peft_target_modules

    manual = peft_target_modules(config)
    if manual:
        return manual, f"peft_lora_target_modules ({len(manual)} names)"
    groups = expand_groups(list(config.ltx2_lora_targets))
    if not config.explicitly_set("ltx2_lora_targets") and data_has_audio(config):
        groups += [group for group in AUDIO_DEFAULT_GROUPS if group not in groups]
        return target_regex(groups), f"{', '.join(groups)} (audio groups added: the data has sound)"
    return target_regex(groups), ", ".join(groups)


def lora_config(config: ResolvedConfig, targets: str | list[str] | None = None) -> Any:
    from vtrain.adapters import peft_lora_config

    return peft_lora_config(config, targets if targets is not None else lora_targets(config)[0])


def add_lora(bundle: ModelBundle, config: ResolvedConfig) -> None:
    from vtrain.adapters import add_peft_lora

    targets, chosen = lora_targets(config)
    add_peft_lora(bundle.model, lora_config(config, targets))
    bundle.meta["lora_targets"] = chosen


def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Attach the configured adapter (or unfreeze everything) and switch on gradient checkpointing."""
    from vtrain.adapters import attach_adapters

    attach_adapters(bundle, config, add_lora, LYCORIS_BLOCKS)


def read_lora(source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
    """A published LTX-2 LoRA in the transformer's peft names, with its ``lora_alpha``
    (:class:`vtrain.family.LoraReader`; see :func:`vtrain.adapters.read_pipeline_lora`)."""
    from diffusers import LTX2Pipeline

    from vtrain.adapters import read_pipeline_lora

    return read_pipeline_lora(LTX2Pipeline, source, weight_name)
