"""Loading an LTX-2 pipeline's parts through diffusers and transformers, as a user with the weights would.

``pretrained_model_name_or_path`` (hub id or diffusers folder) gives every part; with ``model_flavour`` it may
also be a combined single-file checkpoint, a folder holding one, or a hub repo holding one
(:mod:`vtrain_ltx2.flavours`): the transformer and both VAEs then come from that file, the rest from the
flavour's diffusers repo. ``ltx2_transformer_path``,
``ltx2_vae_path``, ``ltx2_audio_vae_path`` and ``ltx2_text_encoder_path`` replace one part each: a folder
(the part's own subfolder or its root) or, for the transformer and the two VAEs, a single-file checkpoint
in the original layout (``from_single_file``, architecture from the base folder's config). The layout
(LTX-2.0 or LTX-2.3/2.5: gated attention, per-modality connector projections, the bandwidth-extension
vocoder) is read from the config files, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


@dataclass(frozen=True)
class Layout:
    """What the config files say about the model generation."""

    variant: str  # "2.0" or "2.3" (2.3 and 2.5 share the layout)
    gated_attention: bool
    cross_attention_modulation: bool
    per_modality_projections: bool
    vocoder_class: str

    def describe(self) -> str:
        return (f"LTX-{self.variant} layout (gated attention {self.gated_attention}, prompt modulation "
                f"{self.cross_attention_modulation}, per-modality connector projections {self.per_modality_projections}, "
                f"vocoder {self.vocoder_class})")


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _error(what: str, key: str, source: str, exc: Exception) -> Exception:
    from vtrain.errors import ConfigError, Problem

    return ConfigError([Problem(key, f"could not load the LTX-2 {what} from {source!r}: {type(exc).__name__}: {exc}",
                                "point it at a diffusers LTX-2 folder (model_index.json with transformer/, vae/, "
                                "audio_vae/, vocoder/, connectors/, text_encoder/, tokenizer/), a component folder or a "
                                "single-file checkpoint; set HF_HUB_OFFLINE=1 only when the files are local")])


def base_source(config: ResolvedConfig) -> Any:
    """The run's :class:`vtrain_ltx2.flavours.Source` (``pretrained_model_name_or_path`` and ``model_flavour``)."""
    from vtrain_ltx2.flavours import resolve

    return resolve(config)


def _source(config: ResolvedConfig, key: str) -> tuple[str, str]:
    value = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
    if value:
        return str(value), key
    return str(base_source(config).base), "pretrained_model_name_or_path"


def _subfolder(source: str, name: str) -> str | None:
    """The part's subfolder when ``source`` is a local folder that has it; hub ids always use it."""
    path = Path(source)
    if path.is_dir():
        return name if (path / name).is_dir() else None
    return name


def _from_pretrained(cls: Any, config: ResolvedConfig, key: str, subfolder: str, **kwargs: Any) -> Any:
    """A part from its own key's path, the run's combined checkpoint, or the base folder/repo."""
    from vtrain_ltx2.combined import load_part

    value = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
    base = base_source(config)
    source, used_key = (str(value), key) if value else (base.checkpoint or base.base, "pretrained_model_name_or_path")
    try:
        if Path(source).is_file() and source.endswith(SINGLE_FILE_SUFFIXES):
            return load_part(cls, source, base.base, subfolder, kwargs.get("torch_dtype"))
        return cls.from_pretrained(source, subfolder=_subfolder(source, subfolder), **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise _error(subfolder, used_key, source, exc) from exc


def load_transformer(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers import LTX2VideoTransformer3DModel

    return _from_pretrained(LTX2VideoTransformer3DModel, config, "ltx2_transformer_path", "transformer", torch_dtype=dtype)


def load_vae(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKLLTX2Video

    return _from_pretrained(AutoencoderKLLTX2Video, config, "ltx2_vae_path", "vae", torch_dtype=dtype)


def load_audio_vae(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKLLTX2Audio

    return _from_pretrained(AutoencoderKLLTX2Audio, config, "ltx2_audio_vae_path", "audio_vae", torch_dtype=dtype)


def vocoder_class(config: ResolvedConfig) -> Any:
    """``LTX2Vocoder`` or the bandwidth-extension ``LTX2VocoderWithBWE``, from the vocoder's config."""
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE

    source, _ = _source(config, "ltx2_audio_vae_path")
    if Path(source).is_file():
        source = str(base_source(config).base)
    try:
        settings = LTX2Vocoder.load_config(source, subfolder=_subfolder(source, "vocoder"))
    except (OSError, ValueError):
        return LTX2Vocoder
    return LTX2VocoderWithBWE if settings.get("_class_name") == "LTX2VocoderWithBWE" or "bwe_in_channels" in settings \
        else LTX2Vocoder


def load_vocoder(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    cls = vocoder_class(config)
    source, key = _source(config, "ltx2_audio_vae_path")
    if Path(source).is_file():
        source, key = str(base_source(config).base), "pretrained_model_name_or_path"
    try:
        return cls.from_pretrained(source, subfolder=_subfolder(source, "vocoder"), torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _error("vocoder", key, source, exc) from exc


def load_connectors(config: ResolvedConfig, dtype: torch.dtype) -> Any:
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    source, key = _source(config, "ltx2_text_encoder_path")
    if not (Path(source).is_dir() and (Path(source) / "connectors").is_dir()):
        source, key = str(base_source(config).base), "pretrained_model_name_or_path"
    try:
        return LTX2TextConnectors.from_pretrained(source, subfolder=_subfolder(source, "connectors"), torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _error("text connectors", key, source, exc) from exc


def load_text_encoder(config: ResolvedConfig, dtype: torch.dtype) -> tuple[Any, Any]:
    """(tokenizer, Gemma text encoder). Gemma-3 multimodal or text-only checkpoints both load."""
    from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

    source, key = _source(config, "ltx2_text_encoder_path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder=_subfolder(source, "tokenizer") or "")
        text_encoder = Gemma3ForConditionalGeneration.from_pretrained(
            source, subfolder=_subfolder(source, "text_encoder") or "", dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _error("Gemma text encoder", key, source, exc) from exc
    tokenizer.padding_side = "left"  # what LTX2Pipeline uses for Gemma
    return tokenizer, text_encoder


def load_scheduler(config: ResolvedConfig) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    source = str(base_source(config).base)
    try:
        return FlowMatchEulerDiscreteScheduler.from_pretrained(source, subfolder=_subfolder(source, "scheduler"))
    except (OSError, ValueError) as exc:
        raise _error("scheduler", "pretrained_model_name_or_path", source, exc) from exc


def detect_layout(transformer: Any, connectors: Any, vocoder: Any) -> Layout:
    """LTX-2.0 vs LTX-2.3/2.5 from the loaded parts' configs."""
    tcfg, ccfg = transformer.config, connectors.config
    gated = bool(tcfg.get("gated_attn", False) or tcfg.get("audio_gated_attn", False))
    modulation = bool(tcfg.get("cross_attn_mod", False) or tcfg.get("audio_cross_attn_mod", False))
    per_modality = bool(ccfg.get("per_modality_projections", False))
    newer = gated or modulation or per_modality or type(vocoder).__name__ == "LTX2VocoderWithBWE"
    return Layout("2.3" if newer else "2.0", gated, modulation, per_modality, type(vocoder).__name__)
