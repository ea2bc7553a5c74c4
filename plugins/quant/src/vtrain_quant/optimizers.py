"""bitsandbytes' 8-bit optimizers, registered under the names SimpleTuner configs use.

Paged optimizers page their state through CUDA unified memory; without a CUDA device the plain
8-bit class of the same algorithm is used instead, with one notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig

log = logging.getLogger("vtrain.quant")

# name -> (bitsandbytes class, class without paging, takes eps, help)
TABLE: dict[str, tuple[str, str, bool, str]] = {
    "bnb-adamw8bit": ("AdamW8bit", "AdamW8bit", True, "bitsandbytes AdamW with 8-bit optimizer state."),
    "bnb-adamw8bit-paged": ("PagedAdamW8bit", "AdamW8bit", True,
                            "bitsandbytes AdamW, 8-bit state paged to CPU memory under pressure (CUDA; plain 8-bit elsewhere)."),
    "bnb-lion8bit": ("Lion8bit", "Lion8bit", False, "bitsandbytes Lion with 8-bit state (lr 3-10x below AdamW's)."),
    "bnb-lion8bit-paged": ("PagedLion8bit", "Lion8bit", False,
                           "bitsandbytes Lion, 8-bit state paged under memory pressure: the lowest-memory choice "
                           "(CUDA; plain 8-bit elsewhere)."),
}

_warned: set[str] = set()


def _class_name(name: str) -> str:
    import torch

    paged, plain, _eps, _help = TABLE[name]
    if paged != plain and not torch.cuda.is_available():
        if name not in _warned:
            _warned.add(name)
            log.warning("%s: paged optimizer state needs CUDA; using bitsandbytes %s (not paged) on this machine",
                        name, plain)
        return plain
    return paged


def make_factory(name: str) -> Callable[[Any, ResolvedConfig, dict[str, Any]], Any]:
    """``factory(params, config, extra)`` for registry entry ``name``."""
    _paged, _plain, takes_eps, _help = TABLE[name]

    def factory(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
        import bitsandbytes.optim as bnb_optim

        kwargs: dict[str, Any] = {"lr": config.learning_rate, "betas": (config.adam_beta1, config.adam_beta2),
                                  "weight_decay": config.adam_weight_decay}
        if takes_eps:
            kwargs["eps"] = config.adam_epsilon
        kwargs.update(extra)
        return getattr(bnb_optim, _class_name(name))(params, **kwargs)

    factory.__name__ = f"bnb_{name.replace('-', '_')}"
    return factory
