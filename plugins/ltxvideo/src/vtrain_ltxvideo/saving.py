"""Writing what training produced in formats other tools load.

- LoRA: ``pytorch_lora_weights.safetensors`` in diffusers' layout (``LTXPipeline.load_lora_weights(dir)``
  reads it unchanged) and ``pytorch_lora_weights_comfyui.safetensors`` keyed for ComfyUI
  (``diffusion_model.<original LTX-Video module name>.lora_A/lora_B.weight`` plus ``.alpha``).
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
# diffusers module names -> the original LTX-Video names ComfyUI uses (the inverse of diffusers'
# single-file conversion).
ORIGINAL_NAMES = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"),
                  ("norm_k", "k_norm"))


def to_original_name(name: str) -> str:
    """A diffusers transformer key in the original LTX-Video naming (``proj_in`` -> ``patchify_proj`` ...)."""
    parts = name.split(".")
    renamed = []
    for part in parts:
        for diffusers_name, original in ORIGINAL_NAMES:
            if part == diffusers_name:
                part = original
        renamed.append(part)
    return ".".join(renamed)


def comfy_state_dict(lora_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """ComfyUI keys for a peft LoRA state dict (``transformer_blocks.0.attn1.to_q.lora_A.weight`` ...)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in lora_state.items():
        key = key.removeprefix("transformer.")
        module, _, leaf = key.partition(".lora_")
        out[f"{COMFY_PREFIX}{to_original_name(module)}.lora_{leaf}"] = value
        if leaf.startswith("A"):
            out[f"{COMFY_PREFIX}{to_original_name(module)}.alpha"] = torch.tensor(float(alpha))
    return out


def save_lora(bundle: ModelBundle, output_dir: Path) -> list[Path]:
    from diffusers import LTXPipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vtrain.adapter_files import cpu_state

    model = bundle.model
    peft_config = model.peft_config["default"]
    state = cpu_state(get_peft_model_state_dict(model))
    LTXPipeline.save_lora_weights(output_dir, transformer_lora_layers=state,
                                  transformer_lora_adapter_metadata=peft_config.to_dict())
    comfy = output_dir / COMFY_LORA
    save_file(comfy_state_dict(state, peft_config.lora_alpha), str(comfy),
              metadata={"format": "pt", "lora_rank": str(peft_config.r), "lora_alpha": str(peft_config.lora_alpha)})
    return [output_dir / DIFFUSERS_LORA, comfy]


def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
    """Write the adapter or model for ``model_type`` / ``lora_type``; return the paths written."""
    from vtrain.adapter_files import save_trained

    return save_trained(bundle, config, output_dir, save_lora)
