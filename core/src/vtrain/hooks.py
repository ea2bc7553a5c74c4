"""A typed facade over the hook calls, so business code never touches ``pm.hook`` directly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.errors import PluginError

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import Artifact, LossOutput, ModelBundle, ModelFamily, TrainState
    from vtrain.options import OptionsRegistry
    from vtrain.plugins import PluginHost
    from vtrain.run import RunContext


class Hooks:
    """Calls the run's hooks with keyword arguments and checks what comes back."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host
        self._hook = host.hook

    # declarations
    def add_options(self, registry: OptionsRegistry) -> None:
        """Call each plugin's ``add_options`` with the registry set to record that plugin as owner."""
        for impl in self._hook.add_options.get_hookimpls():
            registry.owned_by(impl.plugin_name)
            self._call_one(impl, "add_options", registry=registry)
        registry.owned_by("core")

    def _call_one(self, impl: Any, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation; a crash becomes a PluginError naming the plugin."""
        try:
            return impl.function(*[kwargs[arg] for arg in impl.argnames])
        except PluginError:
            raise
        except Exception as exc:
            info = self._host.info.get(impl.plugin_name)
            dist = f" (distribution {info.distribution})" if info else ""
            raise PluginError(f"plugin {impl.plugin_name!r}{dist} failed in {hook}: {type(exc).__name__}: {exc}") from exc

    def register_families(self) -> dict[str, ModelFamily]:
        from vtrain.family import ModelFamily

        families: dict[str, ModelFamily] = {}

        def register(family: ModelFamily) -> None:
            if not isinstance(family, ModelFamily):
                raise PluginError(f"register_families: {family!r} does not follow the ModelFamily protocol")
            if family.name in families:
                raise PluginError(f"model family {family.name!r} is registered twice")
            families[family.name] = family

        for impl in self._hook.register_families.get_hookimpls():
            self._call_one(impl, "register_families", register=register)
        return families

    def register_optimizers(self) -> dict[str, tuple[Callable[..., Any], str]]:
        optimizers: dict[str, tuple[Callable[..., Any], str]] = {}

        def register(name: str, factory: Callable[..., Any], help: str = "") -> None:
            if name in optimizers:
                raise PluginError(f"optimizer {name!r} is registered twice")
            optimizers[name] = (factory, help)

        for impl in self._hook.register_optimizers.get_hookimpls():
            self._call_one(impl, "register_optimizers", register=register)
        return optimizers

    def register_trackers(self) -> dict[str, str]:
        """Every ``report_to`` name a plugin declares, with its help line."""
        trackers: dict[str, str] = {}

        def register(name: str, help: str = "") -> None:
            if name in trackers:
                raise PluginError(f"tracker {name!r} is registered twice")
            trackers[name] = help

        for impl in self._hook.register_trackers.get_hookimpls():
            self._call_one(impl, "register_trackers", register=register)
        return trackers

    def register_commands(self) -> dict[str, tuple[Callable[[list[str]], int], str]]:
        """Every plugin sub-command: name -> (run, help)."""
        commands: dict[str, tuple[Callable[[list[str]], int], str]] = {}

        def register(name: str, run: Callable[[list[str]], int], help: str = "") -> None:
            commands[name] = (run, help)

        self._hook.register_commands(register=register)
        return commands

    def validate_config(self, config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
        self._hook.validate_config(config=config, family=family, problems=problems)

    # model preparation, in its fixed phase order
    def load_model(self, config: ResolvedConfig, family: ModelFamily) -> ModelBundle:
        return _required(self._hook.load_model(config=config, family=family), "load_model")

    def prepare_model(self, bundle: ModelBundle, config: ResolvedConfig, device: Any) -> None:
        """quantise -> place -> adapters -> attention/compile."""
        self._hook.quantize_model(bundle=bundle, config=config)
        self._hook.place_model(bundle=bundle, config=config, device=device)
        _required(self._hook.add_adapters(bundle=bundle, config=config), "add_adapters")
        self._hook.optimize_model(bundle=bundle, config=config)

    # data and objective
    def build_dataset(self, bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily) -> Any:
        return _required(self._hook.build_dataset(bundle=bundle, config=config, family=family), "build_dataset")

    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        return _required(self._hook.encode_batch(bundle=bundle, batch=batch, config=config), "encode_batch")

    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        return self._hook.schedule_shift(config=config, sample_shape=sample_shape)

    def compute_loss(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                     state: TrainState) -> LossOutput:
        return _required(self._hook.compute_loss(bundle=bundle, batch=batch, config=config, state=state), "compute_loss")

    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> list[Artifact]:
        """Run validation without disturbing the training RNG streams."""
        from vtrain.rng import preserved_rng

        with preserved_rng():
            return list(self._hook.validate(bundle=bundle, config=config, step=step, prompts=prompts) or [])

    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        return list(self._hook.save_model(bundle=bundle, config=config, output_dir=output_dir) or [])

    # lifecycle
    def describe_run(self, run: RunContext) -> list[str]:
        return [line for lines in self._hook.describe_run(run=run) for line in (lines or [])]

    def on_run_start(self, run: RunContext) -> None:
        self._hook.on_run_start(run=run)

    def on_train_begin(self, run: RunContext, step: int) -> None:
        self._hook.on_train_begin(run=run, step=step)

    def on_step_end(self, run: RunContext, step: int, logs: Mapping[str, float]) -> None:
        self._hook.on_step_end(run=run, step=step, logs=logs)

    def on_checkpoint(self, run: RunContext, step: int, path: Path) -> None:
        self._hook.on_checkpoint(run=run, step=step, path=path)

    def on_validation(self, run: RunContext, step: int, artifacts: list[Artifact]) -> None:
        self._hook.on_validation(run=run, step=step, artifacts=artifacts)

    def on_run_end(self, run: RunContext, result: Any) -> None:
        self._hook.on_run_end(run=run, result=result)

    def on_run_error(self, run: RunContext, error: BaseException) -> None:
        self._hook.on_run_error(run=run, error=error)


def _required(value: Any, hook: str) -> Any:
    if value is None:
        raise PluginError(f"no plugin answered the {hook!r} hook (is the family plugin installed and not blocked?)")
    return value
