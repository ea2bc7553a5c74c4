"""The torch-optimi optimizers, registered through ``register_optimizers``.

``adamw_bf16`` is AdamW with Kahan-compensated updates: the rounding error of every update is
carried in a buffer, so weights kept in bf16 follow the fp32 trajectory instead of losing small
updates to rounding. For fp32 weights it is plain AdamW. The ``optimi-*`` names are torch-optimi's
optimizers with their defaults (Kahan summation switches itself on for low-precision weights).
The bitsandbytes 8-bit optimizers come from the ``vtrain-quant`` plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig

# name -> (optimi class name, takes betas, takes eps, fixed keyword arguments, help)
_TABLE: dict[str, tuple[str, bool, bool, dict[str, Any], str]] = {
    "adamw_bf16": ("AdamW", True, True, {"kahan_sum": True},
                   "AdamW with Kahan summation (torch-optimi): bf16 weights stay accurate. Recommended."),
    "optimi-adamw": ("AdamW", True, True, {}, "torch-optimi AdamW (Kahan summation automatic for bf16/fp16 weights)."),
    "optimi-lion": ("Lion", True, False, {}, "torch-optimi Lion (use a learning rate 3-10x below AdamW's)."),
    "optimi-stableadamw": ("StableAdamW", True, True, {},
                           "torch-optimi StableAdamW (AdamW with AdaFactor-style update clipping)."),
}


def make_factory(name: str) -> Callable[[Any, ResolvedConfig, dict[str, Any]], Any]:
    """The factory ``(params, config, extra) -> optimizer`` for registry entry ``name``."""
    class_name, takes_betas, takes_eps, fixed, _help = _TABLE[name]

    def factory(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
        import optimi

        kwargs: dict[str, Any] = {"lr": config.learning_rate, "weight_decay": config.adam_weight_decay}
        if takes_betas:
            kwargs["betas"] = (config.adam_beta1, config.adam_beta2)
        if takes_eps:
            kwargs["eps"] = config.adam_epsilon
        kwargs.update(fixed)
        kwargs.update(extra)
        return getattr(optimi, class_name)(params, **kwargs)

    factory.__name__ = f"optimi_{name.replace('-', '_')}"
    return factory


@hookimpl
def register_optimizers(register: Callable[..., None]) -> None:
    """Register ``adamw_bf16`` and the ``optimi-*`` optimizers."""
    for name, entry in _TABLE.items():
        register(name, make_factory(name), help=entry[4])
