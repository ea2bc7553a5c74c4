"""Exponential moving average (EMA) of the trainable weights.

After every ``ema_update_interval``-th update the average moves towards the live weights:
``ema = decay * ema + (1 - decay) * weights``. The average is kept in fp32 on ``ema_device``,
saved in every checkpoint (so a resume continues it exactly), used for validation per
``ema_validation``, and written as an ``ema/`` copy of the final adapter or model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl
from vtrain.services import _state

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import Artifact, ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "ema"
_KEYS = ("ema_decay", "ema_update_interval", "ema_validation", "ema_device")


class EmaWeights:
    """The moving average of a set of named parameters (a :class:`vtrain.run.Stateful`).

    :param params: the live parameters by stable name.
    :param decay: the weight of the old average at each update.
    :param device: where the fp32 average lives.
    """

    def __init__(self, params: Mapping[str, torch.nn.Parameter], decay: float, device: Any) -> None:
        import torch

        self.params = dict(params)
        self.decay = decay
        self.device = device
        self.updates = 0
        self.shadow = {name: p.detach().to(device=device, dtype=torch.float32, copy=True)
                       for name, p in self.params.items()}
        self.busy = False  # set while a nested validate/save call runs with the average swapped in

    def update(self) -> None:
        """Move the average towards the live weights."""
        import torch

        with torch.no_grad():
            for name, param in self.params.items():
                live = param.detach().to(device=self.device, dtype=torch.float32)
                self.shadow[name].mul_(self.decay).add_(live, alpha=1.0 - self.decay)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Inside the block the live parameters hold the average; afterwards they are restored exactly."""
        import torch

        backup = {name: p.detach().clone() for name, p in self.params.items()}
        try:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(self.shadow[name].to(device=param.device, dtype=param.dtype))
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    @contextlib.contextmanager
    def nested(self) -> Iterator[None]:
        """Mark a nested hook call, so this service's own wrappers pass it through."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": {name: t.detach().cpu() for name, t in self.shadow.items()}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["shadow"]
        if set(saved) != set(self.shadow):
            from vtrain.errors import ConfigError, Problem

            raise ConfigError([Problem("use_ema", "the checkpoint's EMA weights do not match this run's trainable weights",
                                       "resume with the same model and adapter settings")])
        for name, tensor in saved.items():
            self.shadow[name].copy_(tensor.to(self.shadow[name].device))
        self.updates = int(state["updates"])


class _EmaRun:
    """The EMA service's per-run state (kept on the bundle)."""

    def __init__(self, ema: EmaWeights, hooks: Any, interval: int, mode: str) -> None:
        self.ema = ema
        self.hooks = hooks
        self.interval = interval
        self.mode = mode


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the EMA keys."""
    cat = {"category": "ema"}
    registry.add("use_ema", "bool", False, "Keep an exponential moving average (EMA) of the trainable weights.", **cat)
    registry.add("ema_decay", "float", 0.995, "EMA decay: ema = decay * ema + (1 - decay) * weights at each EMA update "
                 "(below 1: at 1 the EMA would never move).", minimum=0, less_than=1, **cat)
    registry.add("ema_update_interval", "int", None, "Update the EMA every N optimizer updates (unset: every update).",
                 minimum=1, **cat)
    registry.add("ema_validation", "str", "none",
                 "Validation weights: none (live weights), ema_only (the EMA), comparison (both; EMA files end in -ema).",
                 choices=("none", "ema_only", "comparison"), **cat)
    registry.add("ema_device", "str", "cpu", "Where the fp32 EMA weights live: cpu or accelerator.",
                 choices=("cpu", "accelerator"), **cat)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """EMA settings without ``use_ema`` would change nothing: say so."""
    if not config.use_ema:
        for key in _KEYS:
            if config.explicitly_set(key) and config[key] != "none":
                problems.add(key, "has no effect because use_ema is false", "set use_ema to true, or remove the key")


@hookimpl
def on_run_start(run: RunContext) -> None:
    """Create the average from the prepared weights and register it for checkpoints."""
    config = run.config
    if not config.use_ema or run.bundle is None:
        return
    device = run.accelerator.device if config.ema_device == "accelerator" and run.accelerator is not None else "cpu"
    ema = EmaWeights(dict(run.bundle.trainable_named_parameters()), config.ema_decay, device)
    run.register_stateful(NAME, ema)
    _state.attach(run.bundle, NAME, _EmaRun(ema, run.hooks, config.ema_update_interval or 1, config.ema_validation))


@hookimpl
def on_step_end(run: RunContext, step: int) -> None:
    """Update the average every ``ema_update_interval`` updates."""
    service = _state.lookup(run.bundle, NAME)
    if service is not None and step % service.interval == 0:
        service.ema.update()


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    config = run.config
    if not config.use_ema:
        return None
    return [f"EMA decay {config.ema_decay:g} every {config.ema_update_interval or 1} update(s) on {config.ema_device}, "
            f"validation weights: {config.ema_validation}"]


@hookimpl(wrapper=True)
def validate(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> Any:
    """Validate with the EMA (``ema_only``) or with both weights (``comparison``)."""
    service = _state.lookup(bundle, NAME)
    if service is None or service.ema.busy or service.mode == "none":
        return (yield)
    if service.mode == "ema_only":
        with service.ema.swapped_in():
            artifacts = yield
        return [_tagged(a, "ema") for a in artifacts or []]
    live = [_tagged(a, "live") for a in (yield) or []]
    ema_prompts = {f"{nickname}-ema": prompt for nickname, prompt in prompts.items()}
    with service.ema.nested(), service.ema.swapped_in():
        averaged = service.hooks.validate(bundle, config, step, ema_prompts)
    return live + [_tagged(a, "ema") for a in averaged]


@hookimpl(wrapper=True)
def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> Any:
    """After the model is saved, save the EMA weights the same way under ``output_dir/ema``."""
    paths = yield
    service = _state.lookup(bundle, NAME)
    if service is None or service.ema.busy:
        return paths
    with service.ema.nested(), service.ema.swapped_in():
        ema_paths = service.hooks.save_model(bundle, config, Path(output_dir) / "ema")
    return list(paths or []) + list(ema_paths)


def _tagged(artifact: Artifact, weights: str) -> Artifact:
    from vtrain.family import Artifact

    return Artifact(path=artifact.path, kind=artifact.kind, meta={**artifact.meta, "weights": weights})
