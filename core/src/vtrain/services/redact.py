"""Keeping secrets (webhook URLs and headers, hub tokens, credentials in URLs) out of everything vtrain
shows or saves: ``vtrain config show``, validation errors, the start-up summary, run_info.json,
trackers and the model card."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
# config keys whose inline values hold secrets (a path to a file is kept: the file is the user's)
SECRET_KEYS = frozenset({"webhook_config"})
# inside a JSON value: fields whose whole value is secret, and fields holding a secret-bearing URL
_SECRET_FIELDS = frozenset({"headers", "authorization", "token", "api_key", "apikey", "password", "secret",
                            "access_token", "hf_token", "cookie"})
_URL_FIELDS = frozenset({"webhook_url", "callback_url", "url"})
_TOKEN = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|api_org_[A-Za-z0-9]{16,})\b")
_CREDENTIALS_IN_URL = re.compile(r"(:/{1,2})[^/\s:@]+:[^/\s@]+@")  # also after a Path made :// into :/
_QUERY = re.compile(r"(https?:/{1,2}[^\s?#\"'<>]*)\?[^\s#\"'<>]*")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|x-api-key|api-key)(\"?\s*[:=]\s*\"?)[^\"\s,}]+(\s+[^\"\s,}]+)?")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
# webhook URLs that carry their secret in the path
_SECRET_PATHS = re.compile(r"(https?://(?:[\w-]+\.)*(?:discord(?:app)?\.com/api/webhooks|hooks\.slack\.com/services)"
                           r"/)[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """Only the scheme and host of a webhook URL: its path, query and credentials may all be the secret."""
    match = re.match(r"^(https?://)(?:[^/@\s]*@)?([^/?#\s]+)", url)
    return f"{match.group(1)}{match.group(2)}/{REDACTED}" if match else REDACTED


def redact_json(value: Any) -> Any:
    """A JSON value with secret fields (headers, tokens, webhook URLs) replaced, structure kept."""
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            name = str(key).lower()
            if name in _SECRET_FIELDS and item is not None:
                result[key] = ({k: REDACTED for k in item} if isinstance(item, Mapping) else REDACTED)
            elif name in _URL_FIELDS and isinstance(item, str):
                result[key] = redact_url(item)
            else:
                result[key] = redact_json(item)
        return result
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_value(key: str, value: Any) -> Any:
    """``value`` of config key ``key`` with secrets replaced by ``<redacted>``."""
    if key in SECRET_KEYS and isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            return redact_json(json.loads(value))
        except json.JSONDecodeError:
            return REDACTED
    if key in SECRET_KEYS and isinstance(value, str) and "://" in value:
        return redact_url(value.strip())
    if isinstance(value, (dict, list)):
        return redact_json(value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a resolved config's values safe to print, write to disk or send to a tracker."""
    return {key: redact_value(key, value) for key, value in values.items()}


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with hub tokens, credentials and query strings of URLs, Authorization values, webhook
    URL paths and every string in ``secrets`` removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _TOKEN.sub(REDACTED, text)
    text = _QUERY.sub(r"\1?" + REDACTED, text)
    text = _SECRET_PATHS.sub(r"\1" + REDACTED, text)
    text = _CREDENTIALS_IN_URL.sub(r"\1" + REDACTED + "@", text)
    text = _AUTH_HEADER.sub(r"\1\2" + REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
