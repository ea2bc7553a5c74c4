"""Reading ``webhook_config`` and delivering one event to one target over HTTP.

A target is a JSON object; ``webhook_config`` is one object, a list of them, or a path to a
JSON file holding either. Keys of a target:

- ``webhook_type``: ``discord`` (a Discord webhook) or ``raw`` (a JSON POST to any URL).
- ``webhook_url`` (or ``callback_url``): where to POST. Secret: never logged or saved.
- ``log_level``: the least severe event sent: ``debug``, ``info`` (default), ``warning``, ``error``, ``critical``.
- ``message_prefix``: text put before every message (for example the machine's name).
- ``headers``: extra HTTP headers (an ``Authorization`` token, say). Secret too.
- ``timeout`` (seconds, default 5), ``max_retries`` (default 3), ``queue_size`` (default 64),
  ``progress_interval`` (updates between progress events; default a tenth of the run),
  ``send_media`` (attach validation media, default true), ``ssl_no_verify`` (default false).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
TYPES = ("discord", "raw")
MAX_MEDIA_BYTES = 8 * 1024 * 1024
# name, kind, default, minimum, maximum
_NUMBERS = (("timeout", "float", 5.0, 0, 600), ("max_retries", "int", 3, 0, 20), ("queue_size", "int", 64, 1, 100_000),
            ("progress_interval", "int", None, 1, None))
_KNOWN_KEYS = {"webhook_type", "webhook_url", "callback_url", "log_level", "message_prefix", "headers", "timeout",
               "max_retries", "queue_size", "progress_interval", "send_media", "ssl_no_verify"}


@dataclass
class Event:
    """Something worth telling a person about: a run started, a checkpoint, a validation, an error."""

    name: str
    level: str
    message: str
    step: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


@dataclass
class WebhookTarget:
    """One receiver. ``str()`` never shows the URL or headers."""

    index: int
    kind: str
    url: str = field(repr=False)
    log_level: str = "info"
    message_prefix: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 5.0
    max_retries: int = 3
    queue_size: int = 64
    progress_interval: int | None = None
    send_media: bool = True
    ssl_no_verify: bool = False

    def __str__(self) -> str:
        return f"webhook #{self.index + 1} ({self.kind})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.url, *self.headers.values())

    def wants(self, event: Event) -> bool:
        return LEVELS[event.level] >= LEVELS[self.log_level]


class WebhookConfigError(ValueError):
    """A problem in ``webhook_config``; the message names the target by number, never by URL."""


def load_targets(value: Any) -> list[WebhookTarget]:
    """Read ``webhook_config`` (object, list, or a path to a JSON file)."""
    if value is None:
        return []
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise WebhookConfigError(f"file not found: {value}")
        try:
            value = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise WebhookConfigError(f"{value}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    items = value if isinstance(value, list) else [value]
    targets = []
    for index, item in enumerate(items):
        where = f"target #{index + 1}"
        if not isinstance(item, dict):
            raise WebhookConfigError(f"{where}: expected a JSON object")
        unknown = sorted(set(item) - _KNOWN_KEYS)
        if unknown:
            raise WebhookConfigError(f"{where}: unknown keys {unknown}; known: {sorted(_KNOWN_KEYS)}")
        kind = str(item.get("webhook_type", "discord")).lower()
        if kind not in TYPES:
            raise WebhookConfigError(f"{where}: webhook_type must be one of {', '.join(TYPES)}, got {kind!r}")
        url = item.get("webhook_url") or item.get("callback_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise WebhookConfigError(f"{where}: webhook_url must be an http(s) URL")
        level = str(item.get("log_level", "info")).lower()
        if level not in LEVELS:
            raise WebhookConfigError(f"{where}: log_level must be one of {', '.join(LEVELS)}, got {level!r}")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise WebhookConfigError(f"{where}: headers must be an object of name -> value")
        from vtrain.options import CoercionError, coerce_value

        numbers = {}
        for name, number_kind, default, low, high in _NUMBERS:
            try:
                numbers[name] = coerce_value(item.get(name, default), number_kind, minimum=low, maximum=high)
            except CoercionError as exc:
                raise WebhookConfigError(f"{where}: {name} {exc}") from None
        if numbers["timeout"] <= 0:
            raise WebhookConfigError(f"{where}: timeout must be more than 0 seconds")
        try:
            target = WebhookTarget(
                index=index, kind=kind, url=url, log_level=level, message_prefix=str(item.get("message_prefix") or ""),
                headers={str(k): str(v) for k, v in headers.items()}, timeout=numbers["timeout"],
                max_retries=numbers["max_retries"], queue_size=numbers["queue_size"],
                progress_interval=numbers["progress_interval"] or None,
                send_media=coerce_value(item.get("send_media", True), "bool"),
                ssl_no_verify=coerce_value(item.get("ssl_no_verify", False), "bool"))
        except (TypeError, ValueError) as exc:
            raise WebhookConfigError(f"{where}: {exc}") from None
        targets.append(target)
    return targets


class DeliveryError(Exception):
    """A delivery failed; ``retry`` says whether trying again may help, ``permanent`` that no later event
    can succeed either (the target is given up). The message holds no secret."""

    def __init__(self, message: str, retry: bool, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.permanent = permanent


class _RedirectRefused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refuse_redirects() -> Any:
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """Following a redirect would send the headers (an Authorization token) to wherever the receiver
        points, and urllib turns the POST into a GET without its body: never follow one."""

        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            raise _RedirectRefused(code)

    return NoRedirects()


def deliver(target: WebhookTarget, event: Event) -> None:
    """POST ``event`` to ``target`` once (raises :class:`DeliveryError`)."""
    import base64
    import ssl
    import urllib.error
    import urllib.request
    files = [f for f in event.files if f.is_file() and f.stat().st_size <= MAX_MEDIA_BYTES] if target.send_media else []
    text = f"{target.message_prefix}: {event.message}" if target.message_prefix else event.message
    if target.kind == "discord":
        payload: dict[str, Any] = {"content": text[:2000]}
        body, content_type = (_multipart(payload, files) if files else (json.dumps(payload).encode(), "application/json"))
    else:
        payload = {"event": event.name, "level": event.level, "message": text, "step": event.step, "data": event.data,
                   "media": [{"name": f.name, "mime_type": _mime(f), "base64": base64.b64encode(f.read_bytes()).decode()}
                             for f in files]}
        body, content_type = json.dumps(payload, default=str).encode(), "application/json"
    request = urllib.request.Request(target.url, data=body, method="POST",
                                     headers={"Content-Type": content_type, "User-Agent": "vtrain-webhook",
                                              **target.headers})
    context = ssl._create_unverified_context() if target.ssl_no_verify else None
    handlers = [_refuse_redirects()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=target.timeout) as response:
            response.read()
    except _RedirectRefused as exc:
        raise DeliveryError(f"the receiver answered HTTP {exc.code}, a redirect; webhooks never follow redirects "
                            "(the headers would go to another address), so this target is given up; set webhook_url "
                            "to the final address", retry=False, permanent=True) from None
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code}", retry=exc.code >= 500 or exc.code == 429) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(reason).__name__}: {reason}", retry=True) from None


def _mime(path: Path) -> str:
    import mimetypes

    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _multipart(payload: dict[str, Any], files: list[Path]) -> tuple[bytes, str]:
    import uuid

    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n'
             f"Content-Type: application/json\r\n\r\n{json.dumps(payload)}\r\n".encode()]
    for number, path in enumerate(files):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files[{number}]"; filename="{path.name}"\r\n'
                     f"Content-Type: {_mime(path)}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
