"""Making a diffusers transformer trainable, the parts every family does the same way.

A family decides *which* layers a LoRA targets and which block classes LyCORIS wraps; this module
attaches them: peft LoRA through diffusers' ``PeftAdapterMixin`` (trainable weights in fp32), a
``LycorisNetwork`` kept in ``bundle.extra_trainables`` (so it is optimised, checkpointed and saved like
any plugin-owned module), or a full fine-tune with fp32 master weights. It also reads a published LoRA
through a pipeline's own ``lora_state_dict`` (which converts the original/ComfyUI layouts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

#: ``bundle.extra_trainables`` key of the LyCORIS network.
LYCORIS_KEY = "lycoris"
# LycorisNetwork keyword arguments a lycoris_config JSON may set directly.
_NETWORK_KEYS = {"dropout", "rank_dropout", "module_dropout", "use_tucker", "use_scalar", "train_norm",
                 "decompose_both", "factor", "block_size", "constraint", "rescaled", "weight_decompose", "wd_on_out",
                 "full_matrix", "bypass_mode", "unbalanced_factorization"}


def lycoris_preset(block_classes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A complete LyCORIS preset wrapping the Linear/Conv layers inside ``block_classes`` (lycoris-lora's
    own presets do not know the video transformers' block classes)."""
    return {"target_module": list(block_classes), "target_name": [], "module_algo_map": {}, "name_algo_map": {},
            "use_fnmatch": False, "exclude_name": [], "enable_conv": True, "lora_prefix": "lycoris"}


def peft_lora_config(config: ResolvedConfig, targets: Any) -> Any:
    """peft's ``LoraConfig`` for ``targets`` (module names, or one regex string matched whole); an unset
    ``lora_alpha`` is the rank (scale 1)."""
    from peft import LoraConfig

    alpha = config.lora_alpha if config.lora_alpha is not None else config.lora_rank
    return LoraConfig(r=config.lora_rank, lora_alpha=alpha, lora_dropout=config.lora_dropout, init_lora_weights=True,
                      target_modules=targets)


def add_peft_lora(model: Any, lora_config: Any) -> None:
    """Inject peft LoRA layers into ``model``; only they train, in fp32."""
    import torch

    model.add_adapter(lora_config)  # diffusers' PeftAdapterMixin
    for name, param in model.named_parameters():
        is_lora = "lora_" in name
        param.requires_grad_(is_lora)
        if is_lora:
            param.data = param.data.to(torch.float32)


def read_lycoris_config(path: str) -> dict[str, Any]:
    """The ``lycoris_config`` JSON object; a clear error naming the file when it cannot be read."""
    from vtrain.errors import ConfigError, Problem

    try:
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError([Problem(f"lycoris_config ({path})", f"could not read it: {exc}",
                                   'write a JSON object such as {"algo": "lokr", "factor": 16, "linear_dim": 10000}')]) from exc
    if not isinstance(settings, dict):
        raise ConfigError([Problem(f"lycoris_config ({path})", "expected a JSON object")])
    return settings


def add_lycoris(bundle: ModelBundle, config: ResolvedConfig, block_classes: tuple[str, ...]) -> Any:
    """A ``LycorisNetwork`` over ``block_classes`` of ``bundle.model``, kept in ``bundle.extra_trainables``."""
    import torch
    from lycoris import LycorisNetwork

    settings = read_lycoris_config(config.lycoris_config)
    preset = lycoris_preset(block_classes)
    preset.update(settings.get("apply_preset") or {})
    LycorisNetwork.apply_preset(preset)  # class-level state: every key is set so nothing leaks between runs
    linear_dim = int(settings.get("linear_dim", config.lora_rank))
    # lora_alpha / lora_dropout apply unless the JSON sets linear_alpha / dropout; unset alpha = the rank (scale 1)
    alpha = float(settings.get("linear_alpha", config.lora_alpha if config.lora_alpha is not None else linear_dim))
    extra = {key: settings[key] for key in _NETWORK_KEYS if key in settings}
    extra.setdefault("dropout", config.lora_dropout)
    network = LycorisNetwork(bundle.model, multiplier=float(settings.get("multiplier", 1.0)), lora_dim=linear_dim,
                             conv_lora_dim=int(settings.get("conv_dim", linear_dim)), alpha=alpha,
                             conv_alpha=float(settings.get("conv_alpha", alpha)),
                             network_module=str(settings.get("algo", "lora")).lower(), **extra)
    network.apply_to()
    network.to(torch.float32)
    network.requires_grad_(True)
    bundle.extra_trainables[LYCORIS_KEY] = network
    bundle.meta["lycoris_settings"] = settings
    return network


def attach_adapters(bundle: ModelBundle, config: ResolvedConfig, add_lora: Callable[[ModelBundle, ResolvedConfig], None],
                    lycoris_blocks: tuple[str, ...]) -> None:
    """Attach what ``model_type`` / ``lora_type`` ask for (the family's ``add_lora`` for peft LoRA), record the
    frozen weights' dtype as ``bundle.meta["compute_dtype"]``, switch on gradient checkpointing, train mode."""
    import torch

    model = bundle.model
    if config.model_type == "full":
        model.to(torch.float32)  # fp32 master weights; autocast runs the forward in mixed precision
        model.requires_grad_(True)
    elif config.lora_type == "lycoris":
        model.requires_grad_(False)
        add_lycoris(bundle, config, lycoris_blocks)
    else:
        add_lora(bundle, config)
    bundle.meta["compute_dtype"] = next(p for n, p in model.named_parameters() if "lora_" not in n).dtype
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()


def read_pipeline_lora(pipeline_class: Any, source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
    """A published LoRA (diffusers or original/ComfyUI layout, local or on the hub) read by ``pipeline_class``'s
    ``lora_state_dict``, in the transformer's peft names, with its ``lora_alpha``
    (:class:`vtrain.family.LoraReader`). Per-module ``.alpha`` entries are folded into ``lora_A`` (scale
    alpha/rank), so the returned alpha is then None (scale 1)."""
    state, metadata = pipeline_class.lora_state_dict(source, weight_name=weight_name, return_lora_metadata=True)
    transformer = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
    if not transformer:
        raise ValueError(f"{source}: no transformer LoRA weights in the file")
    alphas = {k[: -len(".alpha")]: float(v) for k, v in transformer.items() if k.endswith(".alpha")}
    for module, alpha in alphas.items():
        down = transformer.get(f"{module}.lora_A.weight")
        if down is not None:
            transformer[f"{module}.lora_A.weight"] = down * (alpha / down.shape[0])
    transformer = {k: v for k, v in transformer.items() if not k.endswith(".alpha")}
    alpha = (metadata or {}).get("transformer.lora_alpha", (metadata or {}).get("lora_alpha"))
    return transformer, None if alpha is None or alphas else float(alpha)
