"""Keyword arguments for registry optimizers that carry SimpleTuner's names.

SimpleTuner builds an optimizer from that optimizer's own default settings, updated by
``optimizer_config``. vtrain does the same, and the ``adam_beta1``/``adam_beta2``/``adam_epsilon``/
``adam_weight_decay`` keys override those defaults when the config sets them explicitly. Only
arguments the optimizer's constructor accepts are passed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vtrain.errors import ConfigError, Problem

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig


def accepted_parameters(cls: type) -> set[str] | None:
    """The constructor's keyword names (None when it takes ``**kwargs`` and so accepts anything)."""
    signature = inspect.signature(cls.__init__)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return set(signature.parameters)


def optimizer_kwargs(cls: type, defaults: Mapping[str, Any], config: ResolvedConfig,
                     extra: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` < explicitly set ``adam_*`` keys < ``optimizer_config``, restricted to what ``cls`` takes."""
    accepted = accepted_parameters(cls)
    kwargs: dict[str, Any] = {"lr": config.learning_rate, **defaults}
    explicit = getattr(config, "explicitly_set", lambda key: True)
    if explicit("adam_beta1") or explicit("adam_beta2"):
        kwargs["betas"] = (config.adam_beta1, config.adam_beta2)
    if explicit("adam_epsilon"):
        kwargs["eps"] = config.adam_epsilon
    if explicit("adam_weight_decay"):
        kwargs["weight_decay"] = config.adam_weight_decay
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.update(extra)  # optimizer_config is passed through as written; a wrong key is the class's error
    return kwargs


def import_class(module: str, name: str, package: str, optimizer: str) -> type:
    """``module.name``, or a ConfigError that names the package to install."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ConfigError([Problem(f"optimizer: {optimizer}", f"needs the package {package}, which is not installed",
                                   f"pip install {package}")]) from None


def class_factory(optimizer: str, module: str, class_name: str, package: str,
                  defaults: Mapping[str, Any]) -> Callable[[Any, ResolvedConfig, dict[str, Any]], Any]:
    """A registry factory ``(params, config, extra) -> optimizer`` for ``module.class_name``."""

    def factory(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
        cls = import_class(module, class_name, package, optimizer)
        return cls(params, **optimizer_kwargs(cls, defaults, config, extra))

    factory.__name__ = f"make_{optimizer.replace('-', '_').replace('+', '_')}"
    factory.implementation = f"{module}.{class_name}"  # type: ignore[attr-defined]
    factory.package = package  # type: ignore[attr-defined]
    return factory
