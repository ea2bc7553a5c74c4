"""Making the transformer trainable: peft LoRA, LyCORIS (lycoris-lora), or full fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.options import LORA_TARGETS

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle

LYCORIS_KEY = "lycoris"
# lycoris-lora's presets do not know LTX-Video's block class: target it by name.
DEFAULT_LYCORIS_PRESET: dict[str, Any] = {"target_module": ["LTXVideoTransformerBlock"], "target_name": [],
                                          "module_algo_map": {}, "name_algo_map": {}, "use_fnmatch": False,
                                          "exclude_name": [], "enable_conv": True, "lora_prefix": "lycoris"}
_NETWORK_KEYS = {"dropout", "rank_dropout", "module_dropout", "use_tucker", "use_scalar", "train_norm",
                 "decompose_both", "factor", "block_size", "constraint", "rescaled", "weight_decompose", "wd_on_out",
                 "full_matrix", "bypass_mode", "unbalanced_factorization"}


def lora_config(config: ResolvedConfig) -> Any:
    from peft import LoraConfig

    alpha = config.lora_alpha if config.lora_alpha is not None else config.lora_rank
    return LoraConfig(r=config.lora_rank, lora_alpha=alpha,
                      lora_dropout=config.lora_dropout, init_lora_weights=True,
                      target_modules=list(LORA_TARGETS[config.lora_target]))


def add_lora(bundle: ModelBundle, config: ResolvedConfig) -> None:
    import torch

    model = bundle.model
    model.add_adapter(lora_config(config))  # diffusers' PeftAdapterMixin: injects peft LoRA layers
    for name, param in model.named_parameters():
        is_lora = "lora_" in name
        param.requires_grad_(is_lora)
        if is_lora:
            param.data = param.data.to(torch.float32)


def read_lycoris_config(path: str) -> dict[str, Any]:
    from vtrain.errors import ConfigError, Problem

    try:
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError([Problem(f"lycoris_config ({path})", f"could not read it: {exc}",
                                   'write a JSON object such as {"algo": "lokr", "factor": 16, "linear_dim": 10000}')]) from exc
    if not isinstance(settings, dict):
        raise ConfigError([Problem(f"lycoris_config ({path})", "expected a JSON object")])
    return settings


def add_lycoris(bundle: ModelBundle, config: ResolvedConfig) -> Any:
    """Build a LycorisNetwork over the transformer blocks; it lives in ``bundle.extra_trainables``."""
    import torch
    from lycoris import LycorisNetwork

    settings = read_lycoris_config(config.lycoris_config)
    preset = dict(DEFAULT_LYCORIS_PRESET)
    preset.update(settings.get("apply_preset") or {})
    LycorisNetwork.apply_preset(preset)  # class-level state: every key is set so nothing leaks between runs
    linear_dim = int(settings.get("linear_dim", config.lora_rank))
    # lora_alpha / lora_dropout apply unless the JSON sets linear_alpha / dropout; unset alpha = the rank (scale 1)
    alpha = float(settings.get("linear_alpha", config.lora_alpha if config.lora_alpha is not None else linear_dim))
    extra = {key: settings[key] for key in _NETWORK_KEYS if key in settings}
    extra.setdefault("dropout", config.lora_dropout)
    network = LycorisNetwork(
        bundle.model,
        multiplier=float(settings.get("multiplier", 1.0)),
        lora_dim=linear_dim,
        conv_lora_dim=int(settings.get("conv_dim", linear_dim)),
        alpha=alpha,
        conv_alpha=float(settings.get("conv_alpha", alpha)),
        network_module=str(settings.get("algo", "lora")).lower(),
        **extra,
    )
    network.apply_to()
    network.to(torch.float32)
    network.requires_grad_(True)
    bundle.extra_trainables[LYCORIS_KEY] = network
    bundle.meta["lycoris_settings"] = settings
    return network


def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Attach the configured adapter (or unfreeze everything) and switch on gradient checkpointing."""
    import torch

    model = bundle.model
    if config.model_type == "full":
        model.to(torch.float32)  # fp32 master weights; autocast runs the forward in mixed precision
        model.requires_grad_(True)
    elif config.lora_type == "lycoris":
        model.requires_grad_(False)
        add_lycoris(bundle, config)
    else:
        add_lora(bundle, config)
    bundle.meta["compute_dtype"] = next(p for n, p in model.named_parameters() if "lora_" not in n).dtype
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()


def read_lora(source: str, weight_name: str | None) -> tuple[dict[str, Any], float | None]:
    """A published LTX-Video LoRA (diffusers or ComfyUI/original layout, local or on the hub) in the
    transformer's peft names, with its ``lora_alpha`` (:class:`vtrain.family.LoraReader`).

    ``LTXPipeline.lora_state_dict`` converts the original layout; per-module ``.alpha`` entries are folded
    into ``lora_A`` (scale alpha/rank), so the returned alpha is then None (scale 1).
    """
    from diffusers import LTXPipeline

    state, metadata = LTXPipeline.lora_state_dict(source, weight_name=weight_name, return_lora_metadata=True)
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
