"""Attention backends (diffusers' attention dispatcher) and regional ``torch.compile``.

``attention_mechanism``: ``sdpa`` is PyTorch's scaled-dot-product attention (diffusers' ``native``
backend, the default); ``sageattention`` (SageAttention's INT8 kernels) is used for validation and
inference only, because diffusers' sage backend has no backward pass; any other name is one of
diffusers' ``AttentionBackendName`` values and applies to training too.

Backends are set per attention layer, never globally. Kernels that refuse an attention mask (flash,
sage) run only on the layers the family declares mask-free (``FamilyTraits.unmasked_attention``,
self-attention); layers that receive a mask (cross-attention with the prompt's padding) keep SDPA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ALIASES = {"sdpa": "native", "sageattention": "sage"}
# backends whose kernels exist only on CUDA devices
CUDA_ONLY_PREFIXES = ("flash", "_flash", "sage", "_sage", "_native_cudnn", "_native_flash", "_native_efficient",
                      "xformers", "aiter")
# backends whose diffusers function raises on any attention mask (diffusers 0.42.1, attention_dispatch.py;
# a test checks this table against the installed library)
MASKLESS_BACKENDS = frozenset({
    "flash", "flash_hub", "flash_4_hub", "_flash_3", "_flash_3_hub", "aiter_fa2_hub", "_native_flash", "_native_xla",
    "sage", "sage_hub", "sage_blackwell_hub", "_sage_qk_int8_pv_fp8_cuda", "_sage_qk_int8_pv_fp8_cuda_sm90",
    "_sage_qk_int8_pv_fp16_cuda", "_sage_qk_int8_pv_fp16_triton"})


def backend_name(mechanism: str) -> str:
    """diffusers' backend name for an ``attention_mechanism`` value."""
    return ALIASES.get(mechanism, mechanism)


def attention_problem(mechanism: str) -> tuple[str, str] | None:
    """(reason, fix) when ``mechanism`` cannot run here; ``None`` when it can."""
    import torch
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    name = backend_name(mechanism)
    known = [b.value for b in AttentionBackendName]
    if name not in known:
        return (f"unknown attention backend {mechanism!r}",
                "use sdpa, sageattention or one of diffusers' backends: " + ", ".join(sorted(known)))
    if mechanism == "sageattention":
        if not torch.cuda.is_available():
            return ("sageattention runs only on CUDA GPUs (its kernels are triton/CUDA); this machine has none",
                    "use attention_mechanism=sdpa")
        from importlib.util import find_spec

        if find_spec("triton") is None or find_spec("sageattention") is None:
            return ("sageattention needs the triton and sageattention packages", "pip install sageattention, or use sdpa")
    elif name.startswith(CUDA_ONLY_PREFIXES) and not torch.cuda.is_available():
        return (f"the {name} attention backend needs a CUDA GPU and this machine has none",
                "use attention_mechanism=sdpa (or _native_math)")
    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ImportError) as exc:
        return (str(exc), "install the backend's package, or use attention_mechanism=sdpa")
    return None


def combination_problems(mechanism: str, unmasked: tuple[str, ...], family_name: str, mixed_precision: str,
                         base_dtype: str) -> list[tuple[str, str]]:
    """(reason, fix) for each reason a known backend cannot run with this family and these precisions."""
    problems = []
    name = backend_name(mechanism)
    if refuses_mask(mechanism) and not unmasked:
        problems.append((f"the {name} kernels refuse an attention mask, and the {family_name} family passes one to "
                         "every attention layer (it declares no mask-free layers)",
                         "use sdpa, or a backend that takes a mask (_native_efficient, _native_cudnn, flex)"))
    if name != "native" and needs_half_precision(mechanism):
        if mechanism == "sageattention" and base_dtype == "fp32":
            problems.append(("the sage kernels take bf16/fp16 inputs only, and validation runs the model in its "
                             "base_model_default_dtype, fp32", "set base_model_default_dtype=bf16, or use sdpa"))
        elif mechanism != "sageattention" and base_dtype == "fp32" and mixed_precision == "no":
            problems.append((f"the {name} kernels take bf16/fp16 inputs only, and this run computes in fp32 "
                             "(mixed_precision=no, base_model_default_dtype=fp32)",
                             "set mixed_precision=bf16, or use sdpa"))
    return problems


def refuses_mask(mechanism: str) -> bool:
    """Whether diffusers' backend for ``mechanism`` raises when it is given an attention mask."""
    return backend_name(mechanism) in MASKLESS_BACKENDS


def needs_half_precision(mechanism: str) -> bool:
    """Whether the backend's constraints ask for bf16/fp16 queries, keys and values (read from diffusers'
    registry, the checks it runs with ``DIFFUSERS_ATTN_CHECKS``)."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    checks = _AttentionBackendRegistry._constraints.get(AttentionBackendName(backend_name(mechanism)), [])
    return any(getattr(check, "__name__", "").startswith("_check_qkv_dtype") for check in checks)


def attention_modules(model: torch.nn.Module, patterns: tuple[str, ...] | None = None) -> list[tuple[str, Any]]:
    """(name, module) of every attention layer that dispatches through diffusers (its processor has an
    ``_attention_backend``); with ``patterns`` only those whose name matches one."""
    from fnmatch import fnmatch

    found = []
    for name, module in model.named_modules():
        processor = getattr(module, "processor", None)
        if processor is None or not hasattr(processor, "_attention_backend"):
            continue
        if patterns is None or any(fnmatch(name, pattern) for pattern in patterns):
            found.append((name, module))
    return found


def backend_targets(model: torch.nn.Module, mechanism: str, unmasked: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The attention layers ``mechanism`` may run on: all of them, or, for a backend that refuses a mask,
    only the layers the family declares mask-free (``FamilyTraits.unmasked_attention``)."""
    from vtrain.errors import ConfigError, Problem

    every = attention_modules(model)
    if not every:
        raise ConfigError([Problem("attention_mechanism", f"{type(model).__name__} does not use diffusers' attention "
                                   "dispatcher, so its attention backend cannot be chosen", "use sdpa")])
    if not refuses_mask(mechanism):
        return every
    chosen = attention_modules(model, unmasked)
    if not chosen:
        raise ConfigError([Problem("attention_mechanism", f"the {backend_name(mechanism)} kernels refuse an attention "
                                   f"mask, and no attention layer of {type(model).__name__} is declared mask-free",
                                   "use sdpa, or a backend that takes a mask (_native_efficient, _native_cudnn, flex)")])
    return chosen


def _assign(modules: list[tuple[str, Any]], backend: Any) -> dict[str, Any]:
    previous = {}
    for name, module in modules:
        previous[name] = module.processor._attention_backend
        module.processor._attention_backend = backend
    return previous


def set_training_backend(model: torch.nn.Module, mechanism: str, unmasked: tuple[str, ...] = ()) -> int:
    """Use ``mechanism`` in the training forward (not for sdpa, the default, nor sage: no backward).

    Set per layer, never globally: a backend that refuses a mask goes only on the mask-free layers
    and the others keep PyTorch's SDPA. Returns how many layers use it."""
    if mechanism in ("sdpa", "sageattention") or backend_name(mechanism) == "native":
        return 0
    from diffusers.models.attention_dispatch import AttentionBackendName

    targets = backend_targets(model, mechanism, unmasked)
    _assign(targets, AttentionBackendName(backend_name(mechanism)))
    return len(targets)


@contextmanager
def inference_backend(model: torch.nn.Module, mechanism: str, unmasked: tuple[str, ...] = ()) -> Iterator[int]:
    """Inside the block ``mechanism`` runs on its layers of ``model`` (all, or the mask-free ones for a
    backend that refuses a mask); each layer's own backend comes back afterwards. Yields the layer count."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    backend = AttentionBackendName(backend_name(mechanism))
    _check_attention_backend_requirements(backend)
    targets = backend_targets(model, mechanism, unmasked)
    previous = _assign(targets, backend)
    try:
        yield len(targets)
    finally:
        for name, module in targets:
            module.processor._attention_backend = previous[name]


def compile_targets(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks to compile: the classes in diffusers' ``_repeated_blocks``, else the
    members of the model's ``ModuleList`` children."""
    import torch

    names = set(getattr(model, "_repeated_blocks", None) or ())
    if names:
        return [m for m in model.modules() if type(m).__name__ in names]
    return [block for child in model.children() if isinstance(child, torch.nn.ModuleList) for block in child]


def compile_blocks(model: torch.nn.Module, mode: str) -> int:
    """``torch.compile`` each transformer block in place (regional compilation); return how many."""
    targets = compile_targets(model)
    for block in targets:
        block.compile(mode=None if mode == "default" else mode)
    return len(targets)
