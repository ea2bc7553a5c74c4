"""A run's fingerprint: what must not change across a resume, stored in every checkpoint.

Keys in :data:`FIXED_KEYS` (the model, the adapter's kind and size, the seed, the datasets, the
optimizer) decide what a checkpoint's weights, optimizer state and data position mean; a resume
that changes one of them is refused, naming the keys. Every other setting may change (a new
learning rate, a longer run): the resume goes on with the new values (see
:func:`vtrain.checkpoint.keep_new_hyperparameters`) and a note lists what changed. The adapter's exact shape is checked again when the
weights are loaded (:func:`vtrain.checkpoint.describe_weight_mismatch`), which also covers
plugins' adapter keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vtrain.errors import ConfigError, Problem

FIXED_KEYS = (
    "model_family",
    "model_type",
    "pretrained_model_name_or_path",
    "model_flavour",  # which checkpoint variant (a family's key, when it declares one)
    "lora_type",
    "lora_rank",
    "lora_alpha",
    "lycoris_config",
    "peft_lora_target_modules",  # the adapter's layers: the saved state does not load into others
    "seed",
    "data_backend_config",
    "optimizer",  # another optimizer cannot continue the saved optimizer state
)
# settings that name where the run is, not what it trains: never compared
_IGNORED = {"output_dir", "resume_from_checkpoint", "overwrite_output_dir"}


def run_fingerprint(config: Any) -> dict[str, Any]:
    """``{"fixed": {...}, "settings": {...}}`` of a resolved config (secrets redacted).

    ``data_backend_config`` and ``lycoris_config`` are recorded by content (a file's JSON), so
    editing the file counts as a change and moving it does not.
    """
    from vtrain.services.redact import redact_config

    settings = redact_config(config.to_json())
    fixed = {key: _content(key, settings.get(key)) for key in FIXED_KEYS if key in settings}
    others = {key: value for key, value in settings.items() if key not in FIXED_KEYS and key not in _IGNORED}
    return {"version": 1, "fixed": fixed, "settings": others}


def _content(key: str, value: Any) -> Any:
    if key not in ("data_backend_config", "lycoris_config", "peft_lora_target_modules") or not isinstance(value, str):
        return value
    path = Path(value)
    if not path.is_file():
        return value
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return data


def compare_fingerprints(saved: dict[str, Any] | None, current: dict[str, Any], checkpoint: Path) -> list[str]:
    """Raise :class:`ConfigError` naming every fixed key that differs; return notes for the others."""
    if saved is None:
        return [f"note: {checkpoint} has no fingerprint (written by an older vtrain): its settings cannot be "
                "compared with this run's"]
    fixed_then, fixed_now = saved.get("fixed", {}), current["fixed"]
    changed = sorted(k for k in set(fixed_then) | set(fixed_now) if fixed_then.get(k) != fixed_now.get(k))
    if changed:
        details = "; ".join(f"{k}: {_short(fixed_then.get(k))} in the checkpoint, {_short(fixed_now.get(k))} now"
                            for k in changed)
        raise ConfigError([Problem(
            f"resume_from_checkpoint: {checkpoint}",
            f"this run differs from the checkpoint in settings a resume cannot change ({details})",
            f"resume with the checkpoint's {', '.join(changed)} (see {checkpoint / 'fingerprint.json'}), "
            "or start afresh in another output_dir (or with overwrite_output_dir)")])
    then, now = saved.get("settings", {}), current["settings"]
    moved = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
    if not moved:
        return []
    listed = ", ".join(f"{k} {_short(then.get(k))} -> {_short(now.get(k))}" for k in moved[:8])
    more = f" and {len(moved) - 8} more" if len(moved) > 8 else ""
    return [f"note: resuming from {checkpoint} with changed settings: {listed}{more}"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """The dataset's size and content (its ``content_key()`` where it has one, else its buckets)."""
    if hasattr(dataset, "content_key"):
        content = dataset.content_key()
    else:
        buckets = [str(dataset.bucket_of(index)) for index in range(len(dataset))]
        content = hashlib.sha256("\n".join(buckets).encode()).hexdigest()[:20]
    return {"samples": len(dataset), "content": content}
