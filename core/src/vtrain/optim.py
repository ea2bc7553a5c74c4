"""Building the optimizer (through the registry) and the learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtrain import catalog
from vtrain.core_plugin import parse_optimizer_config
from vtrain.errors import ConfigError, Problem

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig


def check_optimizer_name(name: str, registered: dict[str, tuple[Callable[..., Any], str]]) -> Problem | None:
    if name in registered:
        return None
    dist = catalog.distribution_for_optimizer(name)
    if dist:
        return Problem(f"optimizer: {name}", f"provided by the plugin distribution {dist}, which is not installed",
                       f"pip install {dist}, or choose one of: {', '.join(sorted(registered))}")
    from vtrain.services.optimizers import UNAVAILABLE

    if name in UNAVAILABLE:
        why, nearest = UNAVAILABLE[name]
        return Problem(f"optimizer: {name}", f"vtrain cannot provide SimpleTuner's {name}: {why}",
                       f"the nearest vtrain optimizer is {nearest}")
    import difflib

    close = difflib.get_close_matches(name, list(registered), n=3, cutoff=0.5)
    fix = f"did you mean {' or '.join(close)}?" if close else f"choose one of: {', '.join(sorted(registered))}"
    return Problem(f"optimizer: {name}", "unknown optimizer (neither vtrain nor SimpleTuner has it)", fix)


def build_optimizer(params: list[Any], config: ResolvedConfig,
                    registered: dict[str, tuple[Callable[..., Any], str]]) -> Any:
    problem = check_optimizer_name(config.optimizer, registered)
    if problem:
        raise ConfigError([problem])
    factory, _help = registered[config.optimizer]
    extra = parse_optimizer_config(config.optimizer_config) if config.optimizer_config else {}
    try:
        return factory(params, config, extra)
    except TypeError as exc:
        raise ConfigError([Problem("optimizer_config", f"{config.optimizer} rejected its arguments: {exc}",
                                   "remove or rename the offending key")]) from None


def build_lr_scheduler(optimizer: Any, config: ResolvedConfig, total_steps: int) -> Any:
    """diffusers' schedules; ``constant`` with warm-up steps becomes ``constant_with_warmup``."""
    from diffusers.optimization import get_cosine_schedule_with_warmup, get_scheduler

    name = config.lr_scheduler
    warmup = config.lr_warmup_steps
    if name == "constant" and warmup > 0:
        name = "constant_with_warmup"
    if name == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total_steps,
                                               num_cycles=0.5 * config.lr_num_cycles)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps,
                         num_cycles=max(1, int(config.lr_num_cycles)), power=config.lr_power)
