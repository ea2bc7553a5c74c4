"""Writing what a run trained, the parts every family writes the same way.

- LyCORIS: ``lycoris_weights.safetensors`` and the ``lycoris_config.json`` it was trained with;
- a full fine-tune: a diffusers ``transformer/`` folder;
- every other plugin-owned trainable (``bundle.extra_trainables``, e.g. a CREPA head): ``<name>.safetensors``.

The LoRA files themselves are the family's (its pipeline's ``save_lora_weights`` and its own
original-naming copy), passed in as ``save_lora``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.adapters import LYCORIS_KEY

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

LYCORIS_WEIGHTS = "lycoris_weights.safetensors"


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """Tensors detached, on the CPU and contiguous, as safetensors writes them."""
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


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
    """One safetensors file per plugin-owned trainable module (LyCORIS excepted: it has its own format)."""
    from safetensors.torch import save_file

    paths = []
    for name, module in bundle.extra_trainables.items():
        if name == LYCORIS_KEY:
            continue
        path = output_dir / f"{name}.safetensors"
        save_file(cpu_state(module.state_dict()), str(path))
        paths.append(path)
    return paths


def save_trained(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path,
                 save_lora: Callable[[ModelBundle, Path], list[Path]]) -> list[Path]:
    """Write the adapter or model for ``model_type`` / ``lora_type``, then the extra trainables; return the paths."""
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
