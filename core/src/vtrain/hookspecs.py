"""The vtrain hook contract.

Every hook is called with keyword arguments only; an implementation may accept any subset of
the parameters (pluggy passes just the ones it names) and must not give them defaults.
The core implements the model hooks ``trylast`` (most by calling the selected
:class:`~vtrain.family.ModelFamily`; ``place_model`` and ``build_dataset`` by itself), so any plugin
can override a step (return earlier) or wrap it (``@hookimpl(wrapper=True)``).
Import the marker as ``from vtrain import hookimpl``. See ``docs/writing-a-plugin.md``.
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
def register_trackers(register: Callable[..., None]) -> None:
    """Declare the ``report_to`` names this plugin's tracker answers to (``--report_to csv``).

    Called once per run while the config is checked; ``report_to`` then accepts the name, and an
    unknown name is reported with the list of registered ones. The tracker itself runs on the
    lifecycle hooks and acts only when ``vtrain.services.trackers.reports_to(run.config, name)``
    is true (the name is listed in ``report_to``, or ``report_to`` is ``all``).
    See ``docs/writing-a-tracker.md``.

    :param register: ``register(name, help="one line for the error message")``; names are
        lower-case and unique across plugins.
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
    """Load the model for ``family``: the trainable model and its frozen components, on the CPU.

    Called once per run, after the config is checked and before model preparation.
    firstresult: the first non-None :class:`~vtrain.family.ModelBundle` wins. The core's trylast
    implementation calls ``family.load_model(config)``; a plugin returns its own bundle to load
    from elsewhere (a different checkpoint format, say).
    """


@hookspec
def quantize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Model-preparation phase 1: quantise frozen weights in place.

    Called for every plugin, once per run, on the CPU-loaded bundle before placement and adapters;
    a quantisation plugin acts only when its own keys ask for it and returns nothing.
    """


@hookspec(firstresult=True)
def place_model(bundle: ModelBundle, config: ResolvedConfig, device: Any) -> bool | None:
    """Model-preparation phase 2: put the model's parts on devices.

    firstresult: return True once placed. The core's trylast implementation (not the family)
    moves ``bundle.model`` and ``bundle.extra_trainables`` to ``device``; frozen components stay
    where ``load_model`` put them until the family moves them for encoding or validation. An
    offload plugin returns True earlier with its own placement.

    :param device: the accelerator's device (``torch.device``), or ``None`` in sharded training
        (``fsdp_enable``): the model stays where it loaded (CPU, or the meta device on ranks that
        did not read the weights) and ``fully_shard`` places each rank's shards.
    """


@hookspec(firstresult=True)
def add_adapters(bundle: ModelBundle, config: ResolvedConfig) -> bool | None:
    """Model-preparation phase 3: attach adapters (LoRA, LyCORIS) or unfreeze for full training.

    firstresult: return True when done; afterwards exactly the parameters to train have
    ``requires_grad``. The core's trylast implementation calls ``family.add_adapters``.
    """


@hookspec
def optimize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """Model-preparation phase 4: attention backend, ``torch.compile`` and similar.

    Called for every plugin, once, after adapters are attached (so compiled code sees them) and
    before the optimizer is built. Change ``bundle.model`` in place; return nothing.
    """


# --- data and the objective -----------------------------------------------------------------


@hookspec(firstresult=True)
def build_dataset(bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily) -> Any | None:
    """Return the training dataset (a :class:`vtrain.data.base.TrainDataset`).

    Called once, after model preparation (the encoders are ready for building caches).
    firstresult. The core's trylast implementation (not the family) builds the datasets of
    ``data_backend_config`` and refuses a run without one; a plugin that generates or streams its
    own data returns a dataset earlier (the ``tinyflow`` test family does, when no
    ``data_backend_config`` is set).
    """


@hookspec(firstresult=True)
def encode_batch(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any] | None:
    """Turn raw pixels and captions into latents, embeddings, masks and conditioning.

    ``batch`` holds ``pixels`` (``(B, F, C, H, W)`` floats in [0, 1]) and/or ``captions`` (a list
    of strings); the answer holds the family's sample keys (``latents``, ``prompt_embeds`` ...).
    Used when caches are built and for uncached data, with gradients off.
    firstresult. The core's trylast implementation calls ``family.encode_batch``.
    """


@hookspec(firstresult=True)
def schedule_shift(config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
    """The timestep shift for a latent sample of ``sample_shape``.

    Called by the family's ``compute_loss`` for every training batch (through
    ``state.shift_for(shape)``; the answer is not cached), and once at start-up for the summary's
    ``shift`` line. ``sample_shape`` is one sample's latent shape without the batch dimension,
    ``(C, F, H, W)`` for video families. Sampled sigmas become ``s*sigma / (1 + (s-1)*sigma)``:
    ``None`` and ``1.0`` both mean no shift. Batches with given ``sigmas`` (the evaluation loss)
    are not shifted, and validation sampling does not use it (the pipeline's scheduler has its own).
    firstresult. The core's trylast implementation calls ``family.schedule_shift``
    (``flow_schedule_shift``, or a resolution-dependent shift with ``flow_schedule_auto_shift``);
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

    Called at step 0 (unless ``disable_benchmark``), every ``validation_step_interval`` updates
    and at the end, on every process. The artifacts then go to ``on_validation``.
    firstresult. The core's trylast implementation calls ``family.validate``. Called with the RNG
    state preserved, so validation never changes the training run.
    """


@hookspec(firstresult=True)
def save_model(bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path] | None:
    """Write the trained adapter or model at the end of the run; return the written paths.

    Called once, on the main process, after the last checkpoint. The paths become
    ``RunResult.model_paths``. firstresult. The core's trylast implementation calls ``family.save_model``.
    """


# --- lifecycle notifications (called for every plugin; results are ignored) ----------------


@hookspec
def describe_run(run: RunContext) -> list[str] | None:
    """Lines for the start-up summary (a memory plan, an enabled regulariser ...).

    Called once, after the dataset is built and before ``on_run_start``. Return a list of short
    plain-text lines without the leading label (or None): each is printed as
    ``  plan          <line>`` in the summary block.
    """


@hookspec
def on_run_start(run: RunContext) -> None:
    """The model is prepared and the data is ready; training is about to begin.

    Called before a checkpoint is restored (``run.state`` is still ``None``), so objects passed
    to ``run.register_stateful`` here are restored on resume.
    """


@hookspec
def on_train_begin(run: RunContext, step: int) -> None:
    """The checkpoint (if any) is restored and the first update is next.

    Called after ``on_run_start`` and the restore, before the step-0 validation: ``run.state`` is
    set, ``run.resume_path`` is the checkpoint folder or ``None``. A tracker that continues a
    resumed run's history reads the step here.

    :param step: the update the run continues from: 0 for a fresh run, the checkpoint's step on resume.
    """


@hookspec
def on_step_end(run: RunContext, step: int, logs: Mapping[str, float]) -> None:
    """An optimizer update finished; ``step`` counts updates from 1.

    ``logs`` (floats, averaged over the update's micro-batches where they come from the loss):
    ``loss`` (the total), ``loss/<term>`` for every term of ``LossOutput.terms`` (``loss/flow`` and
    each regulariser's), every key of ``LossOutput.metrics`` as given by the family and plugins
    (LTX-Video: ``sigma_mean``, the mean training sigma, and ``i2v_fraction``, the share of samples
    with a clean first frame; CREPA: ``crepa_alignment``, ``crepa_weight``), ``lr``,
    ``step_seconds``, ``samples_per_second``, ``epoch``, ``grad_norm`` (only with
    ``grad_clip_method=norm`` and ``max_grad_norm`` > 0) and ``eval/loss`` on evaluation steps.
    ``logs`` is a dict: an implementation marked ``tryfirst=True`` may add metrics of this step
    (an evaluation loss, say); later implementations (trackers) and ``metrics.jsonl`` then see them.
    """


@hookspec
def on_checkpoint(run: RunContext, step: int, path: Path) -> None:
    """A checkpoint was written completely (after the atomic rename) at ``path``.

    Called on every process after each checkpoint (every ``checkpoint_step_interval`` updates and
    at the end); ``path`` is the ``checkpoint-<step>`` folder. Read it, copy it, upload it: do not
    change it.
    """


@hookspec
def on_validation(run: RunContext, step: int, artifacts: list[Artifact]) -> None:
    """Validation at ``step`` produced ``artifacts`` (files under ``output_dir/validation/step-<step>``).

    Called on every process after each ``validate`` call, step 0 included. Each
    :class:`~vtrain.family.Artifact` has ``path``, ``kind`` (``video``, ``image`` ...) and ``meta``
    (for LTX-Video: ``prompt``, ``step``, ``width``, ``height``, ``frames``, ``fps``, ``mode``, ``variant``).
    """


@hookspec
def on_run_end(run: RunContext, result: Any) -> None:
    """The run finished; ``result`` is the :class:`vtrain.run.RunResult` (``docs/run-objects.md``).

    Called once on every process after the model is saved; close files and connections here.
    """


@hookspec
def on_run_error(run: RunContext, error: BaseException) -> None:
    """The run is stopping because of ``error`` (called before the error propagates).

    Called once on every process, instead of ``on_run_end``, for any exception raised in
    ``Runner.run`` (while loading, before ``on_run_start``, too; a ``KeyboardInterrupt`` included),
    so ``run.bundle`` or ``run.state`` may still be ``None``. Release resources; do not raise.
    """
