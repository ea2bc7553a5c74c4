"""Writing what LTX-2 training produced in formats other tools load.

- LoRA: ``pytorch_lora_weights.safetensors`` through ``LTX2Pipeline.save_lora_weights`` with the peft
  config as adapter metadata (so ``LTX2Pipeline.load_lora_weights(dir)`` keeps alpha), and
  ``pytorch_lora_weights_comfyui.safetensors`` in the original LTX-2 naming (``diffusion_model.`` +
  ltx-core module names) with alpha/rank folded into ``lora_B``: diffusers' own converter
  (``_convert_non_diffusers_ltx2_lora_to_diffusers``, run by ``lora_state_dict``) maps it back, and
  neither it nor ComfyUI needs an ``.alpha`` key.
- LyCORIS: ``lycoris_weights.safetensors`` and the ``lycoris_config.json`` it was trained with.
- Full fine-tune: a diffusers ``transformer/`` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

DIFFUSERS_LORA = "pytorch_lora_weights.safetensors"
COMFY_LORA = "pytorch_lora_weights_comfyui.safetensors"
COMFY_PREFIX = "diffusion_model."
# diffusers top-level module names -> ltx-core's (the inverse of diffusers' LTX-2 LoRA converter's renames).
# Longest first, so ``audio_proj_in`` is not read as ``proj_in``.
ORIGINAL_PREFIXES = (
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("audio_prompt_adaln", "audio_prompt_adaln_single"),
    ("audio_time_embed", "audio_adaln_single"),
    ("audio_proj_in", "audio_patchify_proj"),
    ("prompt_adaln", "prompt_adaln_single"),
    ("time_embed", "adaln_single"),
    ("proj_in", "patchify_proj"),
)


def to_original_name(name: str) -> str:
    """A diffusers LTX-2 transformer key in ltx-core naming (attention names are the same in both)."""
    for diffusers_name, original in ORIGINAL_PREFIXES:
        if name == diffusers_name or name.startswith(diffusers_name + "."):
            return original + name[len(diffusers_name):]
    return name


def comfy_state_dict(lora_state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """ComfyUI/original keys for a diffusers LoRA state dict, with ``alpha / rank`` folded into ``lora_B``."""
    scale = float(alpha) / float(rank)
    out: dict[str, torch.Tensor] = {}
    for key, value in lora_state.items():
        key = key.removeprefix("transformer.")
        if ".lora_B." in key and scale != 1.0:
            value = value * scale
        out[COMFY_PREFIX + to_original_name(key)] = value
    return out


def save_lora(bundle: ModelBundle, output_dir: Path) -> list[Path]:
    from diffusers import LTX2Pipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vtrain.adapter_files import cpu_state

    model = bundle.model
    peft_config = model.peft_config["default"]
    state = cpu_state(get_peft_model_state_dict(model))
    LTX2Pipeline.save_lora_weights(output_dir, transformer_lora_layers=state,
                                   transformer_lora_adapter_metadata=peft_config.to_dict())
    comfy = output_dir / COMFY_LORA
    save_file(comfy_state_dict(state, peft_config.r, peft_config.lora_alpha), str(comfy),
              metadata={"format": "pt", "lora_rank": str(peft_config.r), "lora_alpha": str(peft_config.r),
                        "alpha_folded_into_lora_B": str(peft_config.lora_alpha)})
    return [output_dir / DIFFUSERS_LORA, comfy]


def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
    """Write the adapter or model for ``model_type`` / ``lora_type``; return the paths written."""
    from vtrain.adapter_files import save_trained

    return save_trained(bundle, config, output_dir, save_lora)
