"""``peft_lora_target_modules``: SimpleTuner's override of a family's default LoRA targets.

The value is a JSON list of module names (peft ``target_modules``: exact names or name suffixes), the same
list written as a JSON string, or the path of a JSON file holding the list. Families read it through
:func:`peft_target_modules`; :func:`check` reports a malformed value before anything is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEY = "peft_lora_target_modules"


def declare_options(registry: Any) -> None:
    registry.add(KEY, "json", None,
                 "LoRA target modules instead of the family's defaults (lora_type standard): a JSON list of module "
                 "names (peft target_modules: a name matches a module whose name is it or ends with .it), the same "
                 "list as a JSON string, or a path to a JSON file holding it.", category="model")


def _read(value: Any) -> Any:
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"{value} is neither a JSON list nor a file")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"could not read {path}: {exc}") from exc
    return value


def peft_target_modules(config: Any) -> list[str] | None:
    """The module names given in ``peft_lora_target_modules``, or None when unset (empty entries dropped)."""
    value = config.get(KEY)
    if value in (None, "", "None"):
        return None
    names = _read(value)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError("expected a JSON list of module-name strings")
    return [name.strip() for name in names if name.strip()] or None


def check(config: Any, problems: Any) -> None:
    """A malformed value, or one that cannot apply (LyCORIS, full training), as a problem with the fix."""
    if config.get(KEY) in (None, "", "None"):
        return
    try:
        peft_target_modules(config)
    except ValueError as exc:
        problems.add(KEY, str(exc), 'write a JSON list such as ["to_q", "to_k", "to_v", "to_out.0"]')
        return
    if config.model_type != "lora" or config.lora_type != "standard":
        problems.add(KEY, "sets the targets of a standard (peft) LoRA, and this run trains "
                     f"{'every weight' if config.model_type != 'lora' else 'a LyCORIS adapter (targets from lycoris_config)'}",
                     "remove peft_lora_target_modules, or use model_type lora with lora_type standard")
