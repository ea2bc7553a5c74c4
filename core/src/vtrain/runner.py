"""The programmatic entry point: ``Runner.from_config(...).run()``."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vtrain.config import ConfigLayer, ResolvedConfig, apply_family_defaults, resolve_config
from vtrain.core_plugin import CorePlugin
from vtrain.errors import ConfigError, Problem, ProblemCollector
from vtrain.family import ModelFamily
from vtrain.hooks import Hooks
from vtrain.options import OptionsRegistry
from vtrain.plugins import PluginHost, PluginInfo
from vtrain.run import RunContext, RunResult


class Runner:
    """One configured training run with its own plugin manager.

    Build it with :meth:`from_config`; :meth:`run` trains and returns a :class:`RunResult`.
    """

    def __init__(self, host: PluginHost, registry: OptionsRegistry, families: dict[str, ModelFamily],
                 optimizers: dict[str, Any], config: ResolvedConfig) -> None:
        self.host = host
        self.hooks = Hooks(host)
        self.registry = registry
        self.families = families
        self.optimizers = optimizers
        self.config = config
        self.resume_command: str | None = None  # the CLI sets the command line that resumes this run

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: str | Path | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        plugins: Sequence[object | str] = (),
        plugin_files: Sequence[str | Path] = (),
        blocked: Sequence[str] = (),
        autoload: bool | None = None,
        override_source: str = "Runner(overrides)",
    ) -> Runner:
        """Load plugins, declare options, read ``config`` (a JSON file path or a dict) and ``overrides``.

        Raises :class:`~vtrain.errors.ConfigError` with every problem found.
        """
        host, registry, families, optimizers = load_plugins(plugins, plugin_files, blocked, autoload)
        layers = []
        if isinstance(config, Mapping):
            layers.append(ConfigLayer("Runner(config)", dict(config)))
        elif config is not None:
            layers.append(ConfigLayer.from_file(config))
        if overrides:
            layers.append(ConfigLayer(override_source, dict(overrides)))
        resolved = resolve_config(registry, layers, families)
        problems = ProblemCollector()
        family = families[resolved.model_family]
        apply_family_defaults(resolved, family.name, family.traits.recommended_defaults)
        Hooks(host).validate_config(resolved, family, problems)
        from vtrain.optim import check_optimizer_name

        optimizer_problem = check_optimizer_name(resolved.optimizer, optimizers)
        if optimizer_problem:
            problems.problems.append(optimizer_problem)
        if "report_to" in registry:  # the trackers service may be blocked
            from vtrain.services.trackers import check_report_to

            for message in check_report_to(resolved, Hooks(host).register_trackers()):
                problems.add("report_to", message)
        problems.problems = [_with_source(problem, resolved) for problem in problems.problems]
        problems.raise_if_any()
        return cls(host, registry, families, optimizers, resolved)

    @property
    def family(self) -> ModelFamily:
        return self.families[self.config.model_family]

    def plugin_infos(self) -> list[PluginInfo]:
        infos = self.host.describe()
        for info in infos:
            info.options = [o.name for o in self.registry.by_owner(info.name)]
        return infos

    # -- running -------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Train to the end (or resume and finish); return what was done and where it is."""
        from vtrain.quiet import import_quietly

        import_quietly()  # the ML stack's import-time warnings stay out of the output (VTRAIN_VERBOSE=1 shows them)
        from accelerate import Accelerator

        from vtrain.optim import build_lr_scheduler, build_optimizer
        from vtrain.rng import seed_everything
        from vtrain.training import ddp
        from vtrain.training.loop import TrainingLoop
        from vtrain.training.schedule import plan_run_length
        from vtrain.training.summary import print_summary

        config = self.config
        resolve_default_dtype(config, _has_accelerator())
        output_dir = Path(config.output_dir)
        from vtrain.fsdp_options import check_fsdp_launch

        check_fsdp_launch(config)
        accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            cpu=not _has_accelerator(),
            kwargs_handlers=ddp.accelerator_handlers(),
        )
        run = RunContext(config=config, family=self.family, hooks=self.hooks, output_dir=output_dir,
                         plugins=self.plugin_infos(), accelerator=accelerator)
        if self.resume_command:
            run.resume_command = self.resume_command
        from vtrain.output_folder import OutputLock

        lock = OutputLock(output_dir)
        try:
            if accelerator.is_main_process:
                lock.acquire()  # held until the run ends: a second run into output_dir is refused
            run.resume_path = self._prepare_output_dir(output_dir, accelerator)
            info = self._run_info(accelerator)
            if accelerator.is_main_process:
                from vtrain.checkpoint import write_run_info

                write_run_info(output_dir, info)
            seed_everything(config.seed)  # identical model initialisation on every rank
            bundle = self.hooks.load_model(config, self.family)
            # sharded: the model stays where it loaded; fully_shard places the shards below
            self.hooks.prepare_model(bundle, config, None if config.fsdp_enable else accelerator.device)
            run.bundle = bundle
            run.dataset = self.hooks.build_dataset(bundle, config, self.family)
            from vtrain.data.base import group_by_bucket, plan_epoch

            batches = len(plan_epoch(group_by_bucket(run.dataset), config.train_batch_size, config.seed, 0,
                                     accelerator.process_index, accelerator.num_processes).batches)
            _check_enough_data(run.dataset, batches, config, accelerator.num_processes)
            length = plan_run_length(config, batches)
            if config.fsdp_enable:  # before the optimizer exists, so it holds the sharded parameters
                from vtrain.training.sharding import shard_model

                bundle.runtime_model = shard_model(bundle, config, self.family, accelerator)
            params = [p for _, p in bundle.trainable_named_parameters()]
            optimizer = build_optimizer(params, config, self.optimizers)
            lr_scheduler = build_lr_scheduler(optimizer, config, length.total_steps)
            if not config.fsdp_enable:
                if accelerator.num_processes > 1:
                    ddp.exclude_frozen_from_ddp(bundle.model)
                # placement is done (place_model); a second .to() would undo group offload
                bundle.runtime_model = accelerator.prepare_model(bundle.model, device_placement=False)
            seed_everything(config.seed + accelerator.process_index)  # different noise on each rank
            if accelerator.is_main_process:
                print_summary(run, length, optimizer_name=config.optimizer, extra=self.hooks.describe_run(run))
            result = TrainingLoop(run, optimizer, lr_scheduler, length.total_steps, length.max_epochs).train()
            if accelerator.is_main_process:  # what overwrite_output_dir removes when a later run starts afresh
                info["outputs"] = sorted({p.relative_to(output_dir).parts[0] for p in result.model_paths
                                          if output_dir in p.parents})
                write_run_info(output_dir, info)
            self.hooks.on_run_end(run, result)
            if accelerator.is_main_process:
                from vtrain.training.summary import print_end_summary

                print_end_summary(result)
            return result
        except BaseException as error:
            _record_stop(output_dir, info if "info" in locals() else None, error, accelerator.is_main_process)
            self.hooks.on_run_error(run, error)
            if accelerator.num_processes > 1:
                ddp.abort_process_group()  # the other ranks stop now, not at the process-group timeout
            raise
        finally:
            accelerator.end_training()
            _release_accelerate_state()
            lock.release()

    def _prepare_output_dir(self, output_dir: Path, accelerator: Any) -> Path | None:
        """Refuse a fresh run over an earlier run's files (unless overwriting); find and verify the
        checkpoint to resume from, and refuse it when the run's fingerprint differs in a fixed key."""
        from vtrain.checkpoint import find_resume_path, read_fingerprint
        from vtrain.fingerprint import compare_fingerprints, run_fingerprint
        from vtrain.output_folder import check_fresh_run

        config = self.config
        main = accelerator.is_main_process
        say = print if main else (lambda _message: None)
        if main:
            check_fresh_run(output_dir, bool(config.resume_from_checkpoint), config.overwrite_output_dir, say)
        accelerator.wait_for_everyone()  # the earlier run's files are gone before any rank looks for checkpoints
        path = find_resume_path(output_dir, config.resume_from_checkpoint, say)
        if path is None:
            if config.resume_from_checkpoint == "latest" and main and (output_dir / "metrics.jsonl").exists():
                say(f"note: no intact checkpoint in {output_dir}: starting from scratch")
            return None
        for note in compare_fingerprints(read_fingerprint(path), run_fingerprint(config), path):
            say(note)
        return path

    def _run_info(self, accelerator: Any) -> dict[str, Any]:
        import torch

        from vtrain.services.redact import redact_config

        return {
            "config": redact_config(self.config.to_json()),  # webhook URLs and tokens never reach disk
            "config_sources": dict(self.config.sources),
            "plugins": [{"name": i.name, "distribution": i.distribution, "version": i.version, "origin": i.origin}
                        for i in self.plugin_infos()],
            "git_commit": _git_commit(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "world_size": accelerator.num_processes,
        }


def _with_source(problem: Problem, config: ResolvedConfig) -> Problem:
    """``key: ...`` becomes ``config.json: key: ...`` when the key was set there, so every problem names
    the file (or the command line) to fix, not only the key."""
    key = problem.where.split(":")[0].split(" ")[0]
    if key not in config.sources:
        return problem
    source = config.source(key)
    if problem.where.startswith(source):
        return problem
    return Problem(f"{source}: {problem.where}", problem.message, problem.fix)


def load_plugins(plugins: Sequence[object | str] = (), plugin_files: Sequence[str | Path] = (),
                 blocked: Sequence[str] = (), autoload: bool | None = None
                 ) -> tuple[PluginHost, OptionsRegistry, dict[str, ModelFamily], dict[str, Any]]:
    """Start a plugin host and collect options, families and optimizers from every plugin."""
    families: dict[str, ModelFamily] = {}
    core = CorePlugin(families)
    host = PluginHost(builtins=[("core", core)], plugins=plugins, plugin_files=plugin_files, blocked=blocked,
                      autoload=autoload)
    hooks = Hooks(host)
    core.hooks = hooks
    registry = OptionsRegistry()
    hooks.add_options(registry)
    families.update(hooks.register_families())
    optimizers = hooks.register_optimizers()
    return host, registry, families, optimizers


AUTO_DTYPE_SOURCE = "auto"


def resolve_default_dtype(config: ResolvedConfig, accelerator: bool) -> None:
    """An unset ``base_model_default_dtype`` becomes bf16 with an accelerator and fp32 without one."""
    if config.base_model_default_dtype is not None:
        return
    config.values["base_model_default_dtype"] = "bf16" if accelerator else "fp32"
    config.sources["base_model_default_dtype"] = (
        f"{AUTO_DTYPE_SOURCE} (an accelerator: bf16)" if accelerator
        else f"{AUTO_DTYPE_SOURCE} (no accelerator: fp32, which runs faster than bf16 on most CPUs)")


def _release_accelerate_state() -> None:
    """accelerate keeps process-wide singletons; reset them so a later Runner in the same process
    may choose another precision (the distributed process group itself is kept)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _git_commit() -> str | None:
    for folder in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0:
            return out.stdout.strip()
    return os.environ.get("VTRAIN_GIT_COMMIT")


def _check_enough_data(dataset: Any, batches: int, config: ResolvedConfig, world_size: int) -> None:
    from vtrain.errors import Problem

    needed = config.gradient_accumulation_steps
    if batches >= needed:
        return
    from vtrain.data.base import group_by_bucket

    counts = {str(k): len(v) for k, v in group_by_bucket(dataset).items()}
    per_update = config.train_batch_size * config.gradient_accumulation_steps * world_size
    raise ConfigError([Problem(
        "dataset",
        f"not enough samples for one update: {len(dataset)} samples in buckets {counts}, but one update takes "
        f"train_batch_size x gradient_accumulation_steps x processes = {per_update} samples of a single bucket",
        "add data, lower train_batch_size or gradient_accumulation_steps, or raise the dataset's repeats",
    )])


def _record_stop(output_dir: Path, info: dict[str, Any] | None, error: BaseException, main: bool) -> None:
    """A run stopped cleanly by a signal says so in ``run_info.json`` (``stopped``: the signal), so a
    reader of the folder (``vtrain serve``) can tell it from a run that failed."""
    from vtrain.training.stopping import RunStopped

    if not (main and info is not None and isinstance(error, RunStopped)):
        return
    from vtrain.checkpoint import write_run_info

    try:
        write_run_info(output_dir, {**info, "stopped": error.signal_name})
    except OSError:  # a full or read-only disk must not hide the stop message itself
        pass

