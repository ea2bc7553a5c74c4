"""What ``vtrain configure`` asks and the guard rails it applies to the answers.

Every question is built from the options registry (kind, default, choices, range, help), so the
questions cannot drift from the options themselves. Only the standard library is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vtrain.options import Option, OptionsRegistry

#: The keys every session asks, in order (those the registry lacks are skipped: a plugin may be missing).
ASKED_KEYS: tuple[str, ...] = (
    "model_family",
    "pretrained_model_name_or_path",
    "model_type",
    "lora_rank",
    "output_dir",
    "data_backend_config",
    "train_batch_size",
    "gradient_accumulation_steps",
    "max_train_steps",
    "learning_rate",
    "optimizer",
    "lr_scheduler",
    "lr_warmup_steps",
    "mixed_precision",
    "gradient_checkpointing",
    "checkpoint_step_interval",
    "validation_prompt",
    "validation_step_interval",
    "validation_resolution",
    "report_to",
)

#: LoRA learning rates above this usually diverge or burn the adapter in.
LORA_LR_LIMIT = 1e-3


def question_keys(registry: OptionsRegistry, family: str) -> list[str]:
    """The keys to ask after ``model_family``: the fixed list, then the family's own supported keys."""
    keys = [k for k in ASKED_KEYS[1:] if k in registry]
    extra = [o.name for o in registry
             if o.families is not None and family in o.families and o.status != "planned" and o.name not in keys]
    return keys + extra


def applies(key: str, answers: Mapping[str, Any]) -> bool:
    """Whether ``key`` is worth asking given the answers so far (``lora_rank`` only for LoRA)."""
    if key == "lora_rank":
        return answers.get("model_type", "lora") == "lora"
    return True


def question_option(registry: OptionsRegistry, key: str, optimizers: Iterable[str] = (),
                    families: Iterable[str] = ()) -> Option:
    """The registry's option, with the open sets that are known at run time closed as choices."""
    option = registry[key]
    if key == "optimizer" and optimizers:
        return replace(option, choices=tuple(sorted(optimizers)))
    if key == "model_family" and families:
        return replace(option, choices=tuple(sorted(families)))
    return option


def show_value(value: Any) -> str:
    """A value as the user would type it back."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def describe(option: Option) -> str:
    """One line naming the option's type, its allowed values and its help text."""
    rules = [option.kind]
    if option.choices:
        rules.append("one of " + ", ".join(map(str, option.choices)))
    if option.minimum is not None:
        rules.append(f"at least {option.minimum:g}")
    if option.maximum is not None:
        rules.append(f"at most {option.maximum:g}")
    if option.greater_than is not None:
        rules.append(f"more than {option.greater_than:g}")
    if option.less_than is not None:
        rules.append(f"less than {option.less_than:g}")
    return f"{option.name} ({'; '.join(rules)}): {option.help}"


#: The value ``learning_rate`` falls back to when a LoRA rate above :data:`LORA_LR_LIMIT` is declined.
LORA_LR_RECOMMENDED = 1e-4
NO_RECOMMENDATION = object()


@dataclass(frozen=True)
class GuardRail:
    """A warning about an answer. ``refuse``: the answer cannot work here and must be changed;
    otherwise the user may accept it after reading ``reason``. ``recommended``: the value the
    session offers instead (the default answer to "keep this value?" is then to take it), so
    pressing Enter never leads back to the same question."""

    key: str
    reason: str
    refuse: bool = False
    recommended: Any = NO_RECOMMENDATION

    @property
    def has_recommendation(self) -> bool:
        return self.recommended is not NO_RECOMMENDATION


def check_answer(key: str, value: Any, answers: Mapping[str, Any], cuda_available: Callable[[], bool]
                 ) -> list[GuardRail]:
    """The guard rails ``value`` for ``key`` trips, given the answers so far."""
    rails: list[GuardRail] = []
    if key == "gradient_checkpointing" and value is False:
        rails.append(GuardRail(key, "gradient checkpointing is off: video models usually run out of memory "
                                    "without it (recommended: true; it costs some extra compute per step)",
                               recommended=True))
    if key == "lr_warmup_steps" and value:
        steps = answers.get("max_train_steps") or 0
        if steps and value > steps:
            rails.append(GuardRail(key, f"lr_warmup_steps ({value}) is larger than max_train_steps ({steps}): "
                                        "legal, but the learning rate never finishes warming up"))
    if key == "learning_rate" and value is not None and value > LORA_LR_LIMIT \
            and answers.get("model_type", "lora") == "lora":
        rails.append(GuardRail(key, f"learning_rate {value:g} is above {LORA_LR_LIMIT:g}: LoRA training at this rate "
                                    "often diverges or overfits (typical: 1e-4 to 5e-4)",
                               recommended=LORA_LR_RECOMMENDED))
    if key == "mixed_precision" and value == "fp16" and not cuda_available():
        rails.append(GuardRail(key, "fp16 mixed precision needs a CUDA device and none is available here "
                                    "(use bf16, or no)", refuse=True))
    return rails


def data_backend_note(value: Any) -> str | None:
    """A note when ``data_backend_config`` names a file that does not exist yet."""
    if isinstance(value, str) and value and not Path(value).is_file():
        return (f"{value} does not exist yet. vtrain configure does not write the dataloader config: "
                "create it (SimpleTuner's multidatabackend.json format; see examples/ltxvideo/) before training")
    return None


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch, so it is only called when needed)."""
    import torch

    return bool(torch.cuda.is_available())
