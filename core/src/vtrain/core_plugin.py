"""The core's own plugin: its options, the torch optimizers, config checks, and the ``trylast``
implementations of the model hooks that delegate to the selected :class:`ModelFamily`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.builtin_options import MAX_SIDE_PX, declare_core_options
from vtrain.hookspecs import hookimpl

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelBundle, ModelFamily, TrainState
    from vtrain.options import OptionsRegistry


class CorePlugin:
    """Registered first, under the name ``core``; holds the run's family table for delegation."""

    name = "core"

    def __init__(self, families: Mapping[str, ModelFamily]) -> None:
        self.families = families
        self.hooks: Any = None  # the run's vtrain.hooks.Hooks, set by load_plugins (build_dataset calls encode_batch)

    def _family(self, name: str) -> ModelFamily:
        return self.families[name]

    # -- declarations -------------------------------------------------------------------------

    @hookimpl
    def add_options(self, registry: OptionsRegistry) -> None:
        declare_core_options(registry)

    @hookimpl
    def register_optimizers(self, register: Callable[..., None]) -> None:
        register("adamw", _torch_adamw, help="torch.optim.AdamW (fused where the device supports it).")
        register("sgd", _torch_sgd, help="torch.optim.SGD with momentum=adam_beta1.")

    @hookimpl
    def validate_config(self, config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
        if config.max_train_steps == 0 and config.num_train_epochs == 0:
            problems.add("max_train_steps", "both max_train_steps and num_train_epochs are 0: the run has no length",
                         "set max_train_steps (updates) or num_train_epochs")
        if config.lr_scheduler == "cosine_with_restarts" and float(config.lr_num_cycles) != int(config.lr_num_cycles):
            problems.add("lr_num_cycles", f"cosine_with_restarts takes a whole number of cycles, got {config.lr_num_cycles}",
                         "use a whole number, or lr_scheduler=cosine (which takes fractions)")
        if config.mixed_precision == "fp16" and not _cuda_available():
            problems.add("mixed_precision", "fp16 mixed precision needs a CUDA device and none is available",
                         "use mixed_precision=bf16 (or no) on this machine")
        if config.use_masked_loss and not family.traits.supports_masked_loss:
            problems.add("use_masked_loss", f"masked loss is not supported by the {family.name!r} family",
                         "remove use_masked_loss")
        if config.lora_type == "lycoris" and not config.lycoris_config:
            problems.add("lycoris_config", "lora_type=lycoris needs lycoris_config (a JSON file)",
                         "set lycoris_config to the LyCORIS settings file")
        if config.model_type == "full" and config.explicitly_set("lora_type"):
            problems.add("lora_type", "model_type=full trains every weight: lora_type has no effect",
                         "remove lora_type or use model_type=lora")
        from vtrain.services.optimizers import SCHEDULE_FREE

        if config.optimizer in SCHEDULE_FREE and config.lr_scheduler not in ("constant", "constant_with_warmup"):
            problems.add("lr_scheduler", f"{config.optimizer} is schedule-free: it replaces the learning-rate schedule "
                         f"(SimpleTuner overrides lr_scheduler for it too), so {config.lr_scheduler} cannot apply",
                         "use lr_scheduler=constant (warm-up through lr_warmup_steps still applies)")
        if config.flow_schedule_auto_shift and config.flow_schedule_shift is not None:
            problems.add("flow_schedule_auto_shift", "flow_schedule_auto_shift and flow_schedule_shift contradict each other",
                         "set only one of them")
        for path_key in ("user_prompt_library", "lycoris_config"):
            value = config[path_key]
            if value and not Path(value).is_file():
                problems.add(path_key, f"file not found: {value}", "check the path (relative to the current directory)")
        if config.user_prompt_library and Path(config.user_prompt_library).is_file():
            _check_prompt_library(Path(config.user_prompt_library), problems)
        if config.optimizer_config:
            try:
                extra = parse_optimizer_config(config.optimizer_config)
                bad = [key for key, value in extra.items() if not _all_finite(value)]
                if bad:
                    raise ValueError(f"{', '.join(bad)}: numbers must be finite (not nan or inf)")
            except ValueError as exc:
                problems.add("optimizer_config", str(exc), 'use a JSON object or key=value pairs, e.g. "betas=(0.9,0.99),eps=1e-8"')
        resume = config.resume_from_checkpoint
        if resume and resume != "latest" and not Path(resume).is_dir():
            problems.add("resume_from_checkpoint", f"checkpoint folder not found: {resume}",
                         "use latest, or the path of a checkpoint-<step> folder")
        if config.data_backend_config:
            from vtrain.data.spec import parse_backends
            from vtrain.errors import ConfigError
            from vtrain.output_folder import output_inside_datasets

            try:
                plan = parse_backends(config.data_backend_config, config)
            except ConfigError as error:  # checked here too, so `vtrain config validate` reports it
                problems.problems.extend(error.problems)
            else:
                folders = [(b.id, b.instance_data_dir) for b in plan.media]
                problems.problems.extend(output_inside_datasets(Path(config.output_dir), folders))
        if config.overwrite_output_dir and config.resume_from_checkpoint:
            problems.add("overwrite_output_dir", "overwrite_output_dir deletes the checkpoints resume_from_checkpoint "
                         "would continue from", "set only one of them")
        for size in config.validation_resolution:
            parsed = _parse_size(size)
            if not parsed:
                problems.add("validation_resolution", f"{size!r} is not WIDTHxHEIGHT", 'write sizes like "768x512,1280x768"')
            elif not all(1 <= side <= MAX_SIDE_PX for side in parsed):
                problems.add("validation_resolution", f"{size!r}: each side must be between 1 and {MAX_SIDE_PX} pixels",
                             "check for a typo (an extra digit)")
        if config.resolution is not None and not config.data_backend_config and config.resolution > MAX_SIDE_PX:
            problems.add("resolution", f"{config.resolution:g} is beyond any machine's memory (limit {MAX_SIDE_PX})",
                         "check for a typo (an extra digit)")
        from vtrain.disk import write_problem

        reason = write_problem(Path(config.output_dir))
        if reason:
            problems.add("output_dir", f"the run cannot write its output: {reason}",
                         "choose a folder you can write to (a read-only mount, a full disk or a file in the way)")
        from vtrain.fsdp_options import check_fsdp_config
        from vtrain.lora_targets import check as check_lora_targets

        check_fsdp_config(config, family, problems)
        check_lora_targets(config, problems)

    # -- delegation to the family (trylast: any plugin may override or wrap) -------------------

    @hookimpl(trylast=True)
    def load_model(self, config: ResolvedConfig, family: ModelFamily) -> ModelBundle:
        return family.load_model(config)

    @hookimpl(trylast=True)
    def place_model(self, bundle: ModelBundle, device: Any) -> bool:
        if device is None:  # sharded training: fully_shard places the shards, the model stays where it loaded
            return True
        bundle.model.to(device)
        for module in bundle.extra_trainables.values():
            module.to(device)
        return True

    @hookimpl(trylast=True)
    def add_adapters(self, bundle: ModelBundle, config: ResolvedConfig) -> bool:
        self._family(bundle.family).add_adapters(bundle, config)
        return True

    @hookimpl(trylast=True)
    def encode_batch(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> dict[str, Any]:
        return self._family(bundle.family).encode_batch(bundle, batch, config)

    @hookimpl(trylast=True)
    def schedule_shift(self, config: ResolvedConfig, sample_shape: tuple[int, ...]) -> float | None:
        return self._family(config.model_family).schedule_shift(config, sample_shape)

    @hookimpl(trylast=True)
    def compute_loss(self, bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState) -> Any:
        return self._family(bundle.family).compute_loss(bundle, batch, config, state)

    @hookimpl(trylast=True)
    def validate(self, bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> Any:
        return self._family(bundle.family).validate(bundle, config, step, prompts)

    @hookimpl(trylast=True)
    def save_model(self, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
        if config.fsdp_enable:  # every rank calls it: the shards are consolidated onto rank 0, which writes
            from vtrain.training.sharding import save_consolidated

            return save_consolidated(self._family(bundle.family), bundle, config, output_dir)
        return self._family(bundle.family).save_model(bundle, config, output_dir)

    @hookimpl(trylast=True)
    def build_dataset(self, bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily) -> Any:
        from vtrain.errors import ConfigError, Problem

        if not config.data_backend_config:
            raise ConfigError([Problem("data_backend_config",
                                       f"the {family.name!r} family supplies no built-in data and no datasets are defined",
                                       "set data_backend_config to a multidatabackend.json file (or an inline list)")])
        from accelerate import PartialState

        from vtrain.data.build import DataContext, build_datasets

        hooks = self.hooks
        encode = ((lambda batch: hooks.encode_batch(bundle, batch, config)) if hooks is not None
                  else (lambda batch: family.encode_batch(bundle, batch, config)))
        state = PartialState()
        ctx = DataContext(encode=encode, family=family.name, traits=family.traits,
                          identity=dict(bundle.meta.get("cache_identity") or {}), components=dict(bundle.components),
                          device=state.device, rank=state.process_index, world_size=state.num_processes,
                          barrier=state.wait_for_everyone)
        return build_datasets(config, ctx)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _all_finite(value: Any) -> bool:
    import math

    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_all_finite(item) for item in value)
    return True


def _parse_size(text: str) -> tuple[int, int] | None:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _check_prompt_library(path: Path, problems: ProblemCollector) -> None:
    from vtrain.config import read_json_file
    from vtrain.errors import ConfigError
    from vtrain.options import MAX_TEXT_CHARS

    try:
        data = read_json_file(path, what="user_prompt_library")
    except ConfigError as error:
        for problem in error.problems:
            problems.add(f"user_prompt_library ({problem.where})", problem.message, problem.fix)
        return
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        problems.add(f"user_prompt_library ({path})", "expected a JSON object of nickname -> prompt text")
        return
    for nickname, prompt in data.items():
        if len(prompt) > MAX_TEXT_CHARS:
            problems.add(f"user_prompt_library ({path}): {nickname}",
                         f"the prompt is {len(prompt)} characters long; the limit is {MAX_TEXT_CHARS}",
                         "shorten it (the text encoder reads only the first few hundred tokens anyway)")


def parse_optimizer_config(text: Any) -> dict[str, Any]:
    """Read ``optimizer_config``: a JSON object, or ``key=value`` pairs separated by commas."""
    import ast
    import json

    if isinstance(text, dict):
        return dict(text)
    text = str(text).strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from exc
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data
    result: dict[str, Any] = {}
    depth, current, parts = 0, "", []
    for char in text:
        depth += char in "([" and 1 or 0
        depth -= char in ")]" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    for part in parts:
        if "=" not in part:
            raise ValueError(f"{part.strip()!r} is not key=value")
        key, value = part.split("=", 1)
        try:
            result[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            result[key.strip()] = value.strip()
    return result


def _torch_adamw(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
    import torch

    kwargs: dict[str, Any] = {
        "lr": config.learning_rate,
        "betas": (config.adam_beta1, config.adam_beta2),
        "weight_decay": config.adam_weight_decay,
        "eps": config.adam_epsilon,
    }
    if fused_capable(params) and not {"fused", "foreach"} & set(extra):
        kwargs["fused"] = True  # one kernel for all parameters instead of a loop of small ones
    kwargs.update(extra)
    return torch.optim.AdamW(params, **kwargs)


def fused_capable(params: Any) -> bool:
    """Whether torch's fused AdamW applies: every parameter a floating-point CUDA tensor.

    (torch also fuses on CPU, but it is kept to CUDA, where it is the reference trainers' choice.)"""
    import torch

    params = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(params) and all(p.device.type == "cuda" and torch.is_floating_point(p) for p in params)


def _torch_sgd(params: Any, config: ResolvedConfig, extra: dict[str, Any]) -> Any:
    import torch

    kwargs: dict[str, Any] = {"lr": config.learning_rate, "momentum": config.adam_beta1,
                              "weight_decay": config.adam_weight_decay}
    kwargs.update(extra)
    return torch.optim.SGD(params, **kwargs)
