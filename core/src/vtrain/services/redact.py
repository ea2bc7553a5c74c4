"""Keeping secrets (webhook URLs and tokens, hub tokens) out of saved configs, logs and model cards."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
# keys whose inline values hold secrets (a path to a file is kept: the file is the user's)
SECRET_KEYS = frozenset({"webhook_config"})
_TOKEN = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|api_org_[A-Za-z0-9]{16,})\b")
_CREDENTIALS_IN_URL = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")


def redact_value(key: str, value: Any) -> Any:
    """``value`` of config key ``key`` with secrets replaced by ``<redacted>``."""
    if key in SECRET_KEYS and value is not None:
        if isinstance(value, (dict, list)) or (isinstance(value, str) and ("://" in value or value.lstrip().startswith(("{", "[")))):
            return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a resolved config's values safe to write to disk or send to a tracker."""
    return {key: redact_value(key, value) for key, value in values.items()}


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with hub tokens, credentials in URLs and every string in ``secrets`` removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _TOKEN.sub(REDACTED, text)
    return _CREDENTIALS_IN_URL.sub(r"\1" + REDACTED + "@", text)
