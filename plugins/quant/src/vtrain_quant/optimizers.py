"""bitsandbytes' (``bnb-*``) and torchao's (``ao-*``) low-memory optimizers, under SimpleTuner's names.

Each starts from SimpleTuner's default settings for that name; explicitly set ``adam_*`` keys and
``optimizer_config`` override them (:func:`vtrain.services.optimizer_kwargs.optimizer_kwargs`).
Paged optimizers page their state through CUDA unified memory; without a CUDA device the class
of the same algorithm without paging is used instead, with one notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig

log = logging.getLogger("vtrain.quant")

_ADAMW = {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-6}
_ADAM = {"betas": (0.9, 0.999), "weight_decay": 0.0, "eps": 1e-8}
_LION = {"betas": (0.9, 0.99), "weight_decay": 0.0}
_ADAGRAD = {"lr_decay": 0, "weight_decay": 0.0, "eps": 1e-10}
_ADEMAMIX = {"betas": (0.9, 0.999, 0.9999), "alpha": 5.0, "t_alpha": None, "eps": 1e-8, "weight_decay": 1e-2}

# name -> (module, class, class without paging, package, SimpleTuner's default settings, help)
TABLE: dict[str, tuple[str, str, str, str, dict[str, Any], str]] = {
    "bnb-adagrad": ("bitsandbytes.optim", "Adagrad", "Adagrad", "bitsandbytes", _ADAGRAD, "bitsandbytes Adagrad."),
    "bnb-adagrad8bit": ("bitsandbytes.optim", "Adagrad8bit", "Adagrad8bit", "bitsandbytes", _ADAGRAD,
                        "bitsandbytes Adagrad with 8-bit state."),
    "bnb-adam": ("bitsandbytes.optim", "Adam", "Adam", "bitsandbytes", _ADAM, "bitsandbytes Adam."),
    "bnb-adam8bit": ("bitsandbytes.optim", "Adam8bit", "Adam8bit", "bitsandbytes", _ADAM,
                     "bitsandbytes Adam with 8-bit state."),
    "bnb-adamw": ("bitsandbytes.optim", "AdamW", "AdamW", "bitsandbytes", _ADAMW, "bitsandbytes AdamW."),
    "bnb-adamw8bit": ("bitsandbytes.optim", "AdamW8bit", "AdamW8bit", "bitsandbytes", _ADAMW,
                      "bitsandbytes AdamW with 8-bit optimizer state."),
    "bnb-adamw-paged": ("bitsandbytes.optim", "PagedAdamW", "AdamW", "bitsandbytes", _ADAMW,
                        "bitsandbytes AdamW, state paged to CPU memory under pressure (CUDA; not paged elsewhere)."),
    "bnb-adamw8bit-paged": ("bitsandbytes.optim", "PagedAdamW8bit", "AdamW8bit", "bitsandbytes", _ADAMW,
                            "bitsandbytes AdamW, 8-bit state paged under memory pressure (CUDA; not paged elsewhere)."),
    "bnb-lion": ("bitsandbytes.optim", "Lion", "Lion", "bitsandbytes", _LION, "bitsandbytes Lion."),
    "bnb-lion8bit": ("bitsandbytes.optim", "Lion8bit", "Lion8bit", "bitsandbytes", _LION,
                     "bitsandbytes Lion with 8-bit state (lr 3-10x below AdamW's)."),
    "bnb-lion-paged": ("bitsandbytes.optim", "PagedLion", "Lion", "bitsandbytes", _LION,
                       "bitsandbytes Lion, state paged under memory pressure (CUDA; not paged elsewhere)."),
    "bnb-lion8bit-paged": ("bitsandbytes.optim", "PagedLion8bit", "Lion8bit", "bitsandbytes", _LION,
                           "bitsandbytes Lion, 8-bit state paged under memory pressure: the lowest-memory choice "
                           "(CUDA; not paged elsewhere)."),
    "bnb-ademamix": ("bitsandbytes.optim", "AdEMAMix", "AdEMAMix", "bitsandbytes", _ADEMAMIX,
                     "bitsandbytes AdEMAMix (three betas)."),
    "bnb-ademamix8bit": ("bitsandbytes.optim", "AdEMAMix8bit", "AdEMAMix8bit", "bitsandbytes", _ADEMAMIX,
                         "bitsandbytes AdEMAMix with 8-bit state."),
    "bnb-ademamix-paged": ("bitsandbytes.optim", "PagedAdEMAMix", "AdEMAMix", "bitsandbytes", _ADEMAMIX,
                           "bitsandbytes AdEMAMix, state paged (CUDA; not paged elsewhere)."),
    "bnb-ademamix8bit-paged": ("bitsandbytes.optim", "PagedAdEMAMix8bit", "AdEMAMix8bit", "bitsandbytes", _ADEMAMIX,
                               "bitsandbytes AdEMAMix, 8-bit state paged (CUDA; not paged elsewhere)."),
    "ao-adamw8bit": ("torchao.optim", "AdamW8bit", "AdamW8bit", "torchao", _ADAMW,
                     "torchao AdamW with 8-bit block-quantised state."),
    "ao-adamw4bit": ("torchao.optim", "AdamW4bit", "AdamW4bit", "torchao", _ADAMW,
                     "torchao AdamW with 4-bit block-quantised state."),
    "ao-adamfp8": ("torchao.optim", "AdamFp8", "AdamFp8", "torchao", _ADAMW,
                   "torchao Adam with fp8 state (needs a GPU with fp8 support)."),
    "ao-adamwfp8": ("torchao.optim", "AdamWFp8", "AdamWFp8", "torchao", _ADAMW,
                    "torchao AdamW with fp8 state (needs a GPU with fp8 support)."),
}

_warned: set[str] = set()


def _class_name(name: str) -> str:
    import torch

    _module, paged, plain, _package, _defaults, _help = TABLE[name]
    if paged != plain and not torch.cuda.is_available():
        if name not in _warned:
            _warned.add(name)
            log.warning("%s: paged optimizer state needs CUDA; using bitsandbytes %s (not paged) on this machine",
                        name, plain)
        return plain
    return paged


def make_factory(name: str) -> Callable[[Any, ResolvedConfig, dict[str, Any]], Any]:
    """``factory(params, config, extra)`` for registry entry ``name``."""
    from vtrain.services.optimizer_kwargs import import_class, optimizer_kwargs

    module, _paged, _plain, package, defaults, _help = TABLE[name]

    def factory(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
        cls = import_class(module, _class_name(name), package, name)
        return cls(params, **optimizer_kwargs(cls, defaults, config, extra))

    factory.__name__ = f"make_{name.replace('-', '_')}"
    factory.implementation = f"{module}.{TABLE[name][1]}"  # type: ignore[attr-defined]
    factory.package = package  # type: ignore[attr-defined]
    return factory
