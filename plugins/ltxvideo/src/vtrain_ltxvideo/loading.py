"""Loading an LTX-Video pipeline's parts through diffusers and transformers, as a hub user would.

``pretrained_model_name_or_path`` (hub id or local diffusers folder) gives every part;
``pretrained_vae_model_name_or_path`` and ``pretrained_transformer_model_name_or_path`` (+
``pretrained_transformer_subfolder``, ``none`` = weights at the root; a single ``.safetensors``
checkpoint in the original LTX-Video layout also works) replace the VAE or the transformer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _subfolder(value: str | None) -> str | None:
    if value is None or value.strip().lower() in ("", "none", "null", "."):
        return None
    return value


def _load_error(what: str, key: str, source: str, exc: Exception) -> Exception:
    from vtrain.errors import ConfigError, Problem

    return ConfigError([Problem(key, f"could not load the LTX-Video {what} from {source!r}: {exc}",
                                "check the hub id or folder (a diffusers LTX-Video layout), and HF_HUB_OFFLINE "
                                "when the files are not in the local cache")])


def load_transformer(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers import LTXVideoTransformer3DModel

    base = config.pretrained_model_name_or_path
    source = config.pretrained_transformer_model_name_or_path or base
    key = "pretrained_transformer_model_name_or_path" if config.pretrained_transformer_model_name_or_path \
        else "pretrained_model_name_or_path"
    subfolder = _subfolder(config.pretrained_transformer_subfolder)
    try:
        if Path(source).is_file() and source.endswith(SINGLE_FILE_SUFFIXES):
            # An original-layout checkpoint: the architecture comes from the base model's transformer config.
            return LTXVideoTransformer3DModel.from_single_file(source, config=base, subfolder="transformer",
                                                               torch_dtype=dtype)
        return LTXVideoTransformer3DModel.from_pretrained(source, subfolder=subfolder, torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _load_error("transformer", key, f"{source}" + (f" (subfolder {subfolder})" if subfolder else ""),
                          exc) from exc


def load_vae(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKLLTXVideo

    source = config.pretrained_vae_model_name_or_path or config.pretrained_model_name_or_path
    key = "pretrained_vae_model_name_or_path" if config.pretrained_vae_model_name_or_path \
        else "pretrained_model_name_or_path"
    try:
        return AutoencoderKLLTXVideo.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _load_error("VAE", key, source, exc) from exc


def load_text_encoder(config: ResolvedConfig, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import T5EncoderModel, T5TokenizerFast

    source = config.pretrained_model_name_or_path
    try:
        tokenizer = T5TokenizerFast.from_pretrained(source, subfolder="tokenizer")
        text_encoder = T5EncoderModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _load_error("T5 text encoder", "pretrained_model_name_or_path", source, exc) from exc
    return tokenizer, text_encoder


def load_scheduler(config: ResolvedConfig) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    source = config.pretrained_model_name_or_path
    try:
        return FlowMatchEulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise _load_error("scheduler", "pretrained_model_name_or_path", source, exc) from exc


def scheduler_settings(config: ResolvedConfig) -> dict[str, Any]:
    """The scheduler's shift settings, read from its config file (cheap: no weights)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    settings = FlowMatchEulerDiscreteScheduler.load_config(config.pretrained_model_name_or_path, subfolder="scheduler")
    return dict(settings)


def transformer_patch_sizes(config: ResolvedConfig) -> tuple[int, int]:
    """(spatial, temporal) patch sizes from the transformer's config file."""
    from diffusers import LTXVideoTransformer3DModel

    source = config.pretrained_transformer_model_name_or_path or config.pretrained_model_name_or_path
    subfolder = _subfolder(config.pretrained_transformer_subfolder)
    if Path(source).is_file():
        source, subfolder = config.pretrained_model_name_or_path, "transformer"
    settings = LTXVideoTransformer3DModel.load_config(source, subfolder=subfolder)
    return int(settings.get("patch_size", 1)), int(settings.get("patch_size_t", 1))


def temporal_positions(config: ResolvedConfig, vae: Any) -> str:
    """``causal`` or ``scaled``: the temporal RoPE convention the checkpoint was trained with.

    ``auto`` reads the VAE: the 0.9.5 and later VAEs downsample with separate spatial/temporal
    blocks (``downsample_type`` other than ``conv``), 0.9.0/0.9.1 with ``conv`` only, and from 0.9.5
    on the reference inference (LTXConditionPipeline, the original code, ComfyUI) uses causal positions.
    """
    if config.ltx_temporal_positions != "auto":
        return str(config.ltx_temporal_positions)
    kinds = vae.config.get("downsample_type", "conv")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    return "causal" if any(kind != "conv" for kind in kinds) else "scaled"


def is_distilled(config: ResolvedConfig) -> bool:
    """Whether the base is a distilled checkpoint (0.9.7/0.9.8 distilled), by its name: it samples at guidance 1."""
    names = (config.pretrained_model_name_or_path, config.pretrained_transformer_model_name_or_path)
    return any(name and "distilled" in str(name).lower() for name in names)
