"""Validation adapters: extra LoRAs applied on top of the trained weights during validation only.

SimpleTuner's keys: ``validation_adapter_path`` (a local ``.safetensors`` file or folder, a hub repo id,
or ``repo_id:weight_name`` for repos with other file names), ``validation_adapter_name`` (its label),
``validation_adapter_strength``, ``validation_adapter_mode`` (``adapter_only``: validate with the adapter
applied; ``comparison``: with and without; ``none``: not applied) and ``validation_adapter_config``
(several runs, each with its label, path(s) and strength; an array or an object with ``runs``).
Typical use: LTX-2's distilled LoRA for fast validation at guidance 1 and 8 steps.

The family reads the file (capability :class:`vtrain.family.LoraReader`, which knows its published
layouts); this service injects it with peft as a second adapter beside the trained one, sets its
strength, validates, and removes it again (modules it wrapped are unwrapped), so the trained adapter,
its gradients, the optimizer and the saved files never see it.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl
from vtrain.services import _state

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "validation_adapters"
MODES = ("adapter_only", "comparison", "none")
_KEYS = ("validation_adapter_path", "validation_adapter_config", "validation_adapter_name", "validation_adapter_strength")


@dataclass(frozen=True)
class AdapterSource:
    """One LoRA of a validation run: where it is (``source`` + ``weight_name``) and its strength."""

    source: str
    weight_name: str | None
    strength: float


@dataclass(frozen=True)
class AdapterRun:
    """One set of validation media: the adapters applied together, and the label of its files."""

    label: str
    adapters: tuple[AdapterSource, ...]


def split_source(text: str) -> tuple[str, str | None]:
    """``(source, weight_name)``: a local file becomes (its folder, its name); ``repo_id:weight_name`` is split."""
    path = Path(text).expanduser()
    if path.is_file():
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    if ":" in text:
        repo, weight = text.split(":", 1)
        return repo, weight or None
    return text, None


def _looks_local(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.endswith((".safetensors", ".bin")) and ":" not in text


def parse_runs(config: ResolvedConfig) -> list[AdapterRun]:
    """The validation runs of ``validation_adapter_path`` / ``validation_adapter_config``; ``ValueError`` names the key."""
    strength = float(config.validation_adapter_strength)
    if config.validation_adapter_path:
        source = split_source(str(config.validation_adapter_path))
        label = config.validation_adapter_name or "adapter"
        return [AdapterRun(_safe(label), (AdapterSource(*source, strength),))]
    raw = config.validation_adapter_config
    if not raw:
        return []
    if isinstance(raw, (str, Path)) and Path(str(raw)).is_file():
        raw = json.loads(Path(str(raw)).read_text(encoding="utf-8"))
    entries = raw.get("runs") if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise ValueError("expected a non-empty JSON array of runs (or an object with a \"runs\" array)")
    runs = []
    for index, entry in enumerate(entries):
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            raise ValueError(f"run {index}: expected an object with \"path\", got {entry!r}")
        items = entry.get("adapters") or entry.get("paths") or ([entry["path"]] if entry.get("path") else [])
        if not items:
            raise ValueError(f"run {index}: no \"path\" (or \"paths\" / \"adapters\")")
        run_strength = float(entry.get("strength", strength))
        adapters = []
        for item in items:
            item = {"path": item} if isinstance(item, str) else item
            if not isinstance(item, dict) or not item.get("path"):
                raise ValueError(f"run {index}: every adapter needs a \"path\", got {item!r}")
            value = float(item.get("strength", run_strength))
            if value <= 0:
                raise ValueError(f"run {index}: strength must be greater than 0, got {value:g}")
            adapters.append(AdapterSource(*split_source(str(item["path"])), value))
        label = entry.get("label") or entry.get("adapter_name") or f"run{index}"
        runs.append(AdapterRun(_safe(str(label)), tuple(adapters)))
    if len({run.label for run in runs}) != len(runs):
        raise ValueError("two runs have the same label; give each its own \"label\" (it names the files)")
    return runs


def _safe(label: str) -> str:
    from vtrain.training.prompts import safe_nickname

    return safe_nickname(label)


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare SimpleTuner's validation adapter keys."""
    val = {"category": "validation"}
    registry.add("validation_adapter_path", "str", None,
                 "A LoRA applied on top of the trained weights during validation only: a local .safetensors file or "
                 "folder, a hub repo id, or repo_id:weight_name.", **val)
    registry.add("validation_adapter_name", "str", None, "Label of the validation adapter (its files end in -LABEL).",
                 **val)
    registry.add("validation_adapter_strength", "float", 1.0, "Strength of the validation adapter.", greater_than=0,
                 **val)
    registry.add("validation_adapter_mode", "str", "adapter_only",
                 "adapter_only: validate with the adapter applied; comparison: with and without it; none: not applied.",
                 choices=MODES, **val)
    registry.add("validation_adapter_config", "json", None,
                 "Several validation adapter runs: a JSON array (or file) of {label, path | paths, strength}.", **val)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Validation adapters need a family that reads LoRA files and a trained peft LoRA to stack on."""
    from vtrain.family import LoraReader

    if config.validation_adapter_path and config.validation_adapter_config:
        problems.add("validation_adapter_config", "validation_adapter_path and validation_adapter_config are exclusive "
                     "(as in SimpleTuner)", "put the single adapter into validation_adapter_config as one run")
        return
    try:
        runs = parse_runs(config)
    except (ValueError, OSError, TypeError) as exc:
        problems.add("validation_adapter_config", str(exc), 'e.g. [{"label": "fast", "path": "repo/id:file.safetensors"}]')
        return
    if not runs or config.validation_adapter_mode == "none":
        return
    key = "validation_adapter_path" if config.validation_adapter_path else "validation_adapter_config"
    for run in runs:
        for adapter in run.adapters:
            if _looks_local(adapter.source) and not Path(adapter.source).expanduser().exists():
                problems.add(key, f"file not found: {adapter.source}",
                             "a local .safetensors file or folder, a hub repo id, or repo_id:weight_name")
    if not isinstance(family, LoraReader):
        problems.add(key, f"the {family.name!r} family cannot read LoRA files for validation", f"remove {key}")
    elif config.model_type != "lora" or config.lora_type != "standard":
        problems.add(key, "validation adapters are stacked as a second peft LoRA beside the trained one, which needs "
                     f"model_type lora with lora_type standard (this run: {config.model_type}, {config.lora_type})",
                     f"remove {key}")
    elif config.get("fsdp_enable"):
        problems.add(key, "validation adapters are not supported with FSDP (the sharded model cannot take a second "
                     "adapter during sampling)", f"remove {key}")


@hookimpl
def on_run_start(run: RunContext) -> None:
    """Keep the runs and the hook caller on the bundle for :func:`validate`."""
    config = run.config
    if run.bundle is None or config.validation_adapter_mode == "none":
        return
    runs = parse_runs(config)
    if runs:
        _state.attach(run.bundle, NAME, _Service(runs, run.hooks, run.family, config.validation_adapter_mode))


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    mode = run.config.validation_adapter_mode
    runs = parse_runs(run.config) if mode != "none" else []
    if not runs:
        return None
    labels = ", ".join(f"{r.label} ({' + '.join(a.source + (':' + a.weight_name if a.weight_name else '') for a in r.adapters)})"
                       for r in runs)
    return [f"validation adapters ({mode}): {labels}; applied during validation only, never trained or saved"]


class _Service:
    def __init__(self, runs: list[AdapterRun], hooks: Any, family: Any, mode: str) -> None:
        self.runs, self.hooks, self.family, self.mode = runs, hooks, family, mode
        self.busy = False
        self.weights: dict[AdapterSource, tuple[dict[str, Any], float | None]] = {}

    def read(self, adapter: AdapterSource) -> tuple[dict[str, Any], float | None]:
        if adapter not in self.weights:  # read once per run, kept on the CPU
            state, alpha = self.family.read_lora(adapter.source, adapter.weight_name)
            self.weights[adapter] = ({k: v.detach().cpu() for k, v in state.items()}, alpha)
        return self.weights[adapter]


@hookimpl(wrapper=True)
def validate(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> Any:
    """Validate with each run's adapters applied (and, in ``comparison`` mode, without them first)."""
    service = _state.lookup(bundle, NAME)
    if service is None or service.busy:
        return (yield)
    runs = list(service.runs)
    artifacts: list[Any] = []
    if service.mode == "comparison":
        artifacts += [_tagged(a, "none") for a in (yield) or []]
    else:
        first = runs.pop(0)
        with applied(bundle.model, [(*service.read(a), a.strength) for a in first.adapters]):
            artifacts += [_tagged(a, first.label) for a in (yield) or []]
    for run in runs:
        renamed = {f"{nickname}-{run.label}": prompt for nickname, prompt in prompts.items()}
        service.busy = True
        try:
            with applied(bundle.model, [(*service.read(a), a.strength) for a in run.adapters]):
                artifacts += [_tagged(a, run.label) for a in service.hooks.validate(bundle, config, step, renamed) or []]
        finally:
            service.busy = False
    return artifacts


def _tagged(artifact: Any, label: str) -> Any:
    from vtrain.family import Artifact

    return Artifact(path=artifact.path, kind=artifact.kind, meta={**artifact.meta, "validation_adapter": label})


@contextlib.contextmanager
def applied(model: Any, adapters: list[tuple[dict[str, Any], float | None, float]]) -> Iterator[None]:
    """``model`` with ``adapters`` ((state dict, alpha, strength) each) active beside its own adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped_before = {name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}
    previous = {name: list(module.active_adapters) for name, module in model.named_modules()
                if isinstance(module, BaseTunerLayer)}
    names: list[str] = []
    try:
        for index, (state, alpha, strength) in enumerate(adapters):
            name = f"vtrain_validation_{index}"
            _inject(model, state, alpha, name)
            names.append(name)
            for module in model.modules():
                if isinstance(module, BaseTunerLayer) and hasattr(module, "set_scale"):
                    module.set_scale(name, strength)
        for name_, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                module.set_adapter(previous.get(name_, []) + names)
        yield
    finally:
        _remove(model, names, previous, wrapped_before)


def _inject(model: Any, state: dict[str, Any], alpha: float | None, name: str) -> None:
    import re

    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    ranks = {key[: -len(".lora_A.weight")]: int(value.shape[0]) for key, value in state.items()
             if key.endswith(".lora_A.weight")}
    if not ranks:
        raise ValueError("the validation adapter has no LoRA weights (lora_A / lora_B) for the denoiser")
    modules = {module_name for module_name, _ in model.named_modules()}
    missing = sorted(m for m in ranks if m not in modules and f"{m}.base_layer" not in modules)
    if missing:
        raise ValueError(f"the validation adapter names {len(missing)} module(s) this model does not have "
                         f"(e.g. {missing[0]}): it was made for another model")
    rank = Counter(ranks.values()).most_common(1)[0][0]
    escaped = {m: re.escape(m) for m in ranks}
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank,
                        target_modules="^(?:" + "|".join(escaped.values()) + ")$",
                        rank_pattern={escaped[m]: r for m, r in ranks.items() if r != rank},
                        alpha_pattern={} if alpha is not None else {escaped[m]: r for m, r in ranks.items() if r != rank})
    with warnings.catch_warnings():  # peft warns that the model now holds several adapters: that is the point
        warnings.filterwarnings("ignore", message=".*peft_config.*")
        inject_adapter_in_model(config, model, adapter_name=name)
    result = set_peft_model_state_dict(model, state, adapter_name=name)
    unexpected = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if unexpected:
        raise ValueError(f"the validation adapter's weights do not fit this model (e.g. {unexpected[0]})")


def _remove(model: Any, names: list[str], previous: dict[str, list[str]], wrapped_before: set[str]) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module_name, module in list(model.named_modules()):
        if not isinstance(module, BaseTunerLayer):
            continue
        for name in names:
            module.delete_adapter(name)
        if module_name in wrapped_before:
            module.set_adapter(previous.get(module_name, []))
        else:  # wrapped only for the validation adapter: put the original layer back
            parent_name, _, child = module_name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict):
        for name in names:
            configs.pop(name, None)
