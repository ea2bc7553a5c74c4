"""Writing what training produced in formats other tools load.

- LoRA: ``pytorch_lora_weights.safetensors`` in diffusers' layout (``LTXPipeline.load_lora_weights(dir)``
  reads it unchanged) and ``pytorch_lora_weights_comfyui.safetensors`` keyed for ComfyUI
  (``diffusion_model.<original LTX-Video module name>.lora_A/lora_B.weight`` plus ``.alpha``).
- LyCORIS: ``lycoris_weights.safetensors`` and the ``lycoris_config.json`` it was trained with.
- Full fine-tune: a diffusers ``transformer/`` folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.adapters import LYCORIS_KEY

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

DIFFUSERS_LORA = "pytorch_lora_weights.safetensors"
COMFY_LORA = "pytorch_lora_weights_comfyui.safetensors"
LYCORIS_WEIGHTS = "lycoris_weights.safetensors"
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


def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_lora(bundle: ModelBundle, output_dir: Path) -> list[Path]:
    from diffusers import LTXPipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    model = bundle.model
    peft_config = model.peft_config["default"]
    state = _cpu(get_peft_model_state_dict(model))
    LTXPipeline.save_lora_weights(output_dir, transformer_lora_layers=state,
                                  transformer_lora_adapter_metadata=peft_config.to_dict())
    comfy = output_dir / COMFY_LORA
    save_file(comfy_state_dict(state, peft_config.lora_alpha), str(comfy),
              metadata={"format": "pt", "lora_rank": str(peft_config.r), "lora_alpha": str(peft_config.lora_alpha)})
    return [output_dir / DIFFUSERS_LORA, comfy]


def save_lycoris(bundle: ModelBundle, output_dir: Path) -> list[Path]:
    import torch

    network = bundle.extra_trainables[LYCORIS_KEY]
    weights = output_dir / LYCORIS_WEIGHTS
    settings = bundle.meta.get("lycoris_settings", {})
    network.save_weights(str(weights), torch.float32, {"lycoris_config": json.dumps(settings)})
    config_path = output_dir / "lycoris_config.json"
    config_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return [weights, config_path]


def save_extras(bundle: ModelBundle, output_dir: Path) -> list[Path]:
    from safetensors.torch import save_file

    paths = []
    for name, module in bundle.extra_trainables.items():
        if name == LYCORIS_KEY:
            continue
        path = output_dir / f"{name}.safetensors"
        save_file(_cpu(module.state_dict()), str(path))
        paths.append(path)
    return paths


def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
    """Write the adapter or model for ``config.model_type`` / ``lora_type``; return the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.model_type == "full":
        folder = output_dir / "transformer"
        if folder.exists():
            shutil.rmtree(folder)
        bundle.model.save_pretrained(folder, safe_serialization=True)
        paths = sorted(folder.iterdir())
    elif config.lora_type == "lycoris":
        paths = save_lycoris(bundle, output_dir)
    else:
        paths = save_lora(bundle, output_dir)
    return paths + save_extras(bundle, output_dir)
