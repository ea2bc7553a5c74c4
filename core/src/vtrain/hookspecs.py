"""The vtrain hook contract.

Every hook is called with keyword arguments only; an implementation may accept any subset of
the parameters (pluggy passes just the ones it names) and must not give them defaults.
The core implements the model hooks ``trylast`` by delegating to the selected
:class:`~vtrain.family.ModelFamily`, so any plugin can override a step (return earlier) or
wrap it (``@hookimpl(wrapper=True)``). See ``docs/writing-a-plugin.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import Artifact, LossOutput, ModelBundle, ModelFamily, TrainState
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

PROJECT = "vtrain"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- declaration ----------------------------------------------------------------------------


@hookspec
def add_options(registry: OptionsRegistry) -> None:
    """Declare the configuration keys this plugin owns.

    Called once per run for every plugin, before any config is read.

    :param registry: call ``registry.add(name, kind, default, help, ...)`` once per key.
    """


@hookspec
def register_families(register: Callable[[ModelFamily], None]) -> None:
    """Register model families (1:N: one plugin may register several).

    :param register: call ``register(family)`` with an object following
        :class:`~vtrain.family.ModelFamily`. Names must be unique across plugins.
    """


@hookspec
def register_optimizers(register: Callable[..., None]) -> None:
    """Register optimizers under the names users write as ``optimizer``.

    :param register: ``register(name, factory, help=...)``; ``factory(params, config, extra)``
        returns a ``torch.optim.Optimizer`` where ``extra`` is ``optimizer_config`` as a dict.
    """


@hookspec
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Check combinations of keys this plugin understands, before anything heavy is loaded.

    Called for every plugin. Add problems rather than raising, so all of them are reported at once.

    :param config: the resolved configuration (every key has a value).
    :param family: the selected family (its ``traits`` say what it supports).
    :param problems: ``problems.add(key, message, fix)``.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Add ``vtrain <name> ...`` sub-commands (for example ``vtrain ltxvideo make-tiny DIR``).

    :param register: ``register(name, run, help=...)`` where ``run(argv: list[str]) -> int``
        parses its own arguments and returns an exit code.
    """


# --- the model ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_model(config: ResolvedConfig, family: ModelFamily) -> ModelBundle | None:
    """Load the model for ``family``.

    firstresult: the first non-None bundle wins. The core's trylast implementation calls
    ``family.load_model(config)``.
    """


@hookspec
def quantize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Model-preparation phase 1: quantise frozen weights in place.

    Called for every plugin; a quantisation plugin acts only on the keys it owns.
    """


@hookspec(firstresult=True)
def place_model(bundle: ModelBundle, config: ResolvedConfig, device: Any) -> bool | None:
    """Model-preparation phase 2: put the model's parts on devices.

    firstresult: return True once placed. The core's trylast default moves the trainable model
    to ``device``; an offload plugin returns earlier with its own placement.
    """


@hookspec(firstresult=True)
def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> bool | None:
    """Model-preparation phase 3: attach adapters (LoRA, LyCORIS) or unfreeze for full training.

    firstresult: return True when done. The core's trylast implementation calls ``family.add_adapters``.
    """


@hookspec
def optimize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Model-preparation phase 4: attention backend, ``torch.compile`` and similar. Called for every plugin."""


# --- data and the objective -----------------------------------------------------------------


@hookspec(firstresult=True)
def build_dataset(bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily) -> Any | None:
    """Return the training dataset (a :class:`vtrain.data.base.TrainDataset`).

    firstresult. The core's trylast implementation builds the datasets of ``data_backend_config``.
    """


@hookspec(firstresult=True)
def encode_batch(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any] | None:
    """Turn raw pixels and captions into latents, embeddings, masks and conditioning.

    firstresult. Used when caches are built and for uncached data. Delegates to the family.
    """


@hookspec(firstresult=True)
def schedule_shift(config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
    """The timestep shift for a latent sample of ``sample_shape``.

    firstresult. The core delegates to the family (manual or resolution-dependent shift);
    a plugin returning a number earlier overrides it.
    """


@hookspec(firstresult=True)
def compute_loss(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState) -> LossOutput | None:
    """The training objective for one batch.

    firstresult. The family's objective comes from the core's trylast implementation.
    Optional batch keys a family must honour: ``sigmas`` (shape ``(B,)``, used as given: no
    sampling, no shift) and ``noise`` (shaped like the latents), so an evaluation can score the
    model at fixed timesteps with fixed noise. Families offering
    :class:`~vtrain.family.VelocityPredictor` also honour ``noisy_latents`` and ``loss_weight``.
    Regularisers wrap it (``wrapper=True``): run code before ``yield``, then add terms to the
    returned :class:`~vtrain.family.LossOutput` with ``add_term``. Every term is logged on its own.
    A wrapper whose pre-``yield`` code runs the model (rollout) is ``tryfirst``, the outermost, so
    wrappers that observe the training forward (CREPA's capture) see only that forward.
    """


@hookspec(firstresult=True)
def validate(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> list[Artifact] | None:
    """Generate validation media for ``prompts`` (nickname -> prompt) and return the artifacts.

    firstresult. Delegates to the family. Called with the RNG state preserved, so validation
    never changes the training run.
    """


@hookspec(firstresult=True)
def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path] | None:
    """Write the trained adapter or model at the end of the run; return the written paths.

    firstresult. Delegates to the family.
    """


# --- lifecycle notifications (called for every plugin; results are ignored) ----------------


@hookspec
def describe_run(run: RunContext) -> list[str] | None:
    """Lines for the start-up summary (a memory plan, an enabled regulariser ...)."""


@hookspec
def on_run_start(run: RunContext) -> None:
    """The model is prepared and the data is ready; training is about to begin.

    Called before a checkpoint is restored (``run.state`` is still ``None``), so objects passed
    to ``run.register_stateful`` here are restored on resume.
    """


@hookspec
def on_step_end(run: RunContext, step: int, logs: Mapping[str, float]) -> None:
    """An optimizer update finished. ``logs`` holds every loss term, the lr, grad norm and timing.

    ``logs`` is a dict: an implementation marked ``tryfirst=True`` may add metrics of this step
    (an evaluation loss, say); later implementations (trackers) and ``metrics.jsonl`` then see them.
    """


@hookspec
def on_checkpoint(run: RunContext, step: int, path: Path) -> None:
    """A checkpoint was written completely (after the atomic rename) at ``path``."""


@hookspec
def on_validation(run: RunContext, step: int, artifacts: list[Artifact]) -> None:
    """Validation at ``step`` produced ``artifacts``."""


@hookspec
def on_run_end(run: RunContext, result: Any) -> None:
    """The run finished; ``result`` is the :class:`vtrain.run.RunResult`."""


@hookspec
def on_run_error(run: RunContext, error: BaseException) -> None:
    """The run is stopping because of ``error`` (called before the error propagates)."""
