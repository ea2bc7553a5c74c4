"""Attention backends (diffusers' attention dispatcher) and regional ``torch.compile``.

``attention_mechanism``: ``sdpa`` is PyTorch's scaled-dot-product attention (diffusers' ``native``
backend, the default); ``sageattention`` (SageAttention's INT8 kernels) is used for validation and
inference only, because diffusers' sage backend has no backward pass; any other name is one of
diffusers' ``AttentionBackendName`` values and applies to training too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ALIASES = {"sdpa": "native", "sageattention": "sage"}
# backends whose kernels exist only on CUDA devices
CUDA_ONLY_PREFIXES = ("flash", "_flash", "sage", "_sage", "_native_cudnn", "_native_flash", "_native_efficient",
                      "xformers", "aiter")


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


def set_training_backend(model: torch.nn.Module, mechanism: str) -> bool:
    """Use ``mechanism`` in the training forward (not for sdpa, the default, nor sage: no backward)."""
    if mechanism in ("sdpa", "sageattention") or backend_name(mechanism) == "native":
        return False
    if not hasattr(model, "set_attention_backend"):
        from vtrain.errors import ConfigError, Problem

        raise ConfigError([Problem("attention_mechanism", f"{type(model).__name__} does not use diffusers' attention "
                                   "dispatcher, so its attention backend cannot be chosen", "use sdpa")])
    model.set_attention_backend(backend_name(mechanism))
    return True


def inference_backend(mechanism: str) -> Any:
    """A context manager that makes ``mechanism`` the active backend (for validation)."""
    from diffusers.models.attention_dispatch import attention_backend

    return attention_backend(backend_name(mechanism))


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
