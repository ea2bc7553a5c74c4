"""Making the transformer trainable: peft LoRA, LyCORIS (lycoris-lora), or full fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.options import LORA_TARGETS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

LYCORIS_BLOCKS = ("LTXVideoTransformerBlock",)  # what LyCORIS wraps (its presets do not know this block class)


def lora_config(config: ResolvedConfig) -> Any:
    from vtrain.adapters import peft_lora_config
    from vtrain.lora_targets import peft_target_modules

    return peft_lora_config(config, peft_target_modules(config) or list(LORA_TARGETS[config.lora_target]))


def add_lora(bundle: ModelBundle, config: ResolvedConfig) -> None:
    from vtrain.adapters import add_peft_lora

    add_peft_lora(bundle.model, lora_config(config))


def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Attach the configured adapter (or unfreeze everything) and switch on gradient checkpointing."""
    from vtrain.adapters import attach_adapters

    attach_adapters(bundle, config, add_lora, LYCORIS_BLOCKS)


def read_lora(source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
    """A published LTX-Video LoRA in the transformer's peft names, with its ``lora_alpha``
    (:class:`vtrain.family.LoraReader`; see :func:`vtrain.adapters.read_pipeline_lora`)."""
    from diffusers import LTXPipeline

    from vtrain.adapters import read_pipeline_lora

    return read_pipeline_lora(LTXPipeline, source, weight_name)
