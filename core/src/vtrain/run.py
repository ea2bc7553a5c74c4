"""The objects a run hands to lifecycle hooks, and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle, ModelFamily, TrainState
    from vtrain.hooks import Hooks
    from vtrain.plugins import PluginInfo


class Stateful(Protocol):
    """Anything with ``state_dict``/``load_state_dict`` that must survive a resume (EMA, counters)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RunContext:
    """Everything about a running training job that plugins may read.

    :param config: the resolved configuration.
    :param family: the selected model family.
    :param hooks: the run's :class:`vtrain.hooks.Hooks` (call other hooks through it, e.g.
        ``run.hooks.schedule_shift(config, shape)``).
    :param bundle: the loaded, prepared model.
    :param accelerator: the ``accelerate.Accelerator`` driving the run.
    :param output_dir: where the run writes.
    :param state: the loop position (``None`` until the restore, that is during ``on_run_start``).
    :param plugins: every loaded plugin's name, distribution and version.
    :param statefuls: the objects registered with :meth:`register_stateful`.
    :param dataset: the training dataset (set before ``on_run_start``).
    :param resume_command: what the user runs to resume this run (printed when it stops on a signal).
    :param resume_path: the verified checkpoint the run resumes from (``None``: a fresh start); set
        before ``on_run_start``, restored after it (``on_train_begin`` gets the step).
    """

    config: ResolvedConfig
    family: ModelFamily
    hooks: Hooks
    output_dir: Path
    plugins: list[PluginInfo]
    bundle: ModelBundle | None = None
    accelerator: Any = None
    state: TrainState | None = None
    statefuls: dict[str, Stateful] = field(default_factory=dict)
    dataset: Any = None
    resume_command: str = 'Runner.from_config(..., overrides={"resume_from_checkpoint": "latest"}).run()'
    resume_path: Path | None = None

    @property
    def is_main_process(self) -> bool:
        """True on the process that writes files and talks to trackers (rank 0, or a single process)."""
        return self.accelerator is None or self.accelerator.is_main_process

    def register_stateful(self, name: str, obj: Stateful) -> None:
        """Save ``obj`` in every checkpoint and restore it on resume (call from ``on_run_start``... or earlier)."""
        if name in self.statefuls:
            raise ValueError(f"a stateful object named {name!r} is already registered")
        self.statefuls[name] = obj


@dataclass
class RunResult:
    """What :meth:`vtrain.Runner.run` returns.

    :param steps: optimizer updates done (including those before a resume).
    :param final_loss: the last update's loss.
    :param output_dir: the run's folder.
    :param model_paths: files of the saved adapter or model.
    :param checkpoints: checkpoint folders present at the end.
    :param validation: validation artifacts written during the run.
    :param resumed_from: the checkpoint the run resumed from, if any.
    :param seconds: wall time of the run (this process, this invocation).
    """

    steps: int
    final_loss: float | None
    output_dir: Path
    model_paths: list[Path] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    validation: list[Path] = field(default_factory=list)
    resumed_from: Path | None = None
    seconds: float = 0.0
