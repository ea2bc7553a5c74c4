"""The options registry: every config key is declared once, here or by a plugin's ``add_options``.

From one :class:`Option` come the config-file key, the ``--key value`` CLI override, the
``Runner`` keyword and the generated options reference page (``docs/options.md``).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vtrain.errors import PluginError

Kind = Literal["bool", "int", "float", "str", "path", "json", "list"]
Status = Literal["supported", "planned"]

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}
_NONE = {"none", "null"}
# Longest text any str option accepts: a prompt of megabytes aborts inside the tokenizer, minutes in.
MAX_TEXT_CHARS = 20_000


class CoercionError(ValueError):
    """A value could not be read as the option's type; the message says what was expected."""


@dataclass(frozen=True)
class Option:
    """One configuration key.

    :param name: the key, as written in ``config.json`` (without the leading ``--``).
    :param kind: how string values are read: bool, int, float, str, path, json (an object/list,
        or a path to a JSON file), list (comma-separated strings, or a JSON list).
    :param default: the value when the key is absent (``None`` means "unset").
    :param help: one or two sentences for the options reference and ``vtrain config show``.
    :param owner: the plugin that declares it (filled in by the registry).
    :param choices: the allowed values, if the set is closed.
    :param minimum: the smallest allowed number (inclusive), for int and float.
    :param maximum: the largest allowed number (inclusive), for int and float.
    :param greater_than: an exclusive lower bound (the value must be strictly larger), for
        boundary values that would make a run meaningless (a shift of 0, a learning rate of 0).
    :param less_than: an exclusive upper bound (the value must be strictly smaller).
    :param families: the model families this key applies to; ``None`` means every family.
    :param status: ``planned`` keys are recognised but their feature is not built yet: a value
        other than the default is refused with ``planned_note`` instead of being ignored.
    :param category: a heading for the reference page.
    :param max_length: the longest text a str/path value may be (default :data:`MAX_TEXT_CHARS`).
    :param aliases: other names the key is read under (SimpleTuner's names for the same setting).
    """

    name: str
    kind: Kind
    default: Any
    help: str
    owner: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    greater_than: float | None = None
    less_than: float | None = None
    families: tuple[str, ...] | None = None
    status: Status = "supported"
    planned_note: str = ""
    category: str = "general"
    max_length: int | None = None
    aliases: tuple[str, ...] = ()

    def coerce(self, raw: Any) -> Any:
        """Read ``raw`` (a string from a config file or the CLI, or a native JSON value)."""
        if raw is None:
            return None
        if isinstance(raw, str) and raw.strip().lower() in _NONE and self.kind not in ("str", "path"):
            return None
        value = coerce_value(raw, self.kind, minimum=self.minimum, maximum=self.maximum,
                             max_length=self.max_length if self.max_length is not None else MAX_TEXT_CHARS)
        if self.choices is not None and value is not None and value not in self.choices:
            raise CoercionError(f"expected one of {', '.join(map(str, self.choices))}, got {_short(raw)}")
        if self.kind in ("int", "float") and value is not None:
            if self.greater_than is not None and not value > self.greater_than:
                raise CoercionError(f"must be greater than {self.greater_than:g}, got {value}")
            if self.less_than is not None and not value < self.less_than:
                raise CoercionError(f"must be less than {self.less_than:g}, got {value}")
        return value


def coerce_value(raw: Any, kind: str, minimum: float | None = None, maximum: float | None = None,
                 max_length: int | None = MAX_TEXT_CHARS) -> Any:
    """Read ``raw`` as ``kind`` and check its bounds: the one coercion path of top-level keys and of
    dataset keys (``data_backend_config``), so a value means the same wherever it is written.

    Numbers must be finite; ``minimum``/``maximum`` bound numbers, ``max_length`` bounds text.
    Raises :class:`CoercionError` saying what was expected.
    """
    if raw is None:
        return None
    value = _READERS[kind](raw)
    if kind in ("int", "float"):
        if minimum is not None and value < minimum:
            raise CoercionError(f"must be at least {_num(minimum)}, got {value}")
        if maximum is not None and value > maximum:
            raise CoercionError(f"must be at most {_num(maximum)}, got {value}")
    if kind in ("str", "path") and max_length is not None and len(value) > max_length:
        raise CoercionError(f"is {len(value)} characters long; the limit is {max_length}")
    return value


def _num(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


def _short(raw: Any) -> str:
    """``repr(raw)``, cut short: an error message never echoes megabytes."""
    if isinstance(raw, dict):
        return "a JSON object"  # never echoed: objects are where headers and tokens live
    if isinstance(raw, list):
        return f"a list of {len(raw)} item{'s' if len(raw) != 1 else ''}"
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def _read_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CoercionError(f"expected true or false, got {_short(raw)}")


def _read_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise CoercionError(f"expected a whole number, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and not math.isfinite(raw):
        raise CoercionError(f"expected a finite whole number, got {raw!r}")
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):
            raise CoercionError(f"expected a finite whole number, got {_short(raw)}")
        if number is not None and number.is_integer():
            return int(number)
    raise CoercionError(f"expected a whole number, got {_short(raw)}")


def _read_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise CoercionError(f"expected a number, got {raw!r}")
    number = None
    if isinstance(raw, (int, float)):
        try:
            number = float(raw)
        except OverflowError:  # an int with hundreds of digits
            raise CoercionError(f"expected a finite number, got {_short(raw)}") from None
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            pass
    if number is None:
        raise CoercionError(f"expected a number, got {_short(raw)}")
    if not math.isfinite(number):
        raise CoercionError(f"expected a finite number, got {_short(raw)}")
    return number


def _read_str(raw: Any) -> str:
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise CoercionError(f"expected text, got {_short(raw)}")


def _read_json(raw: Any) -> Any:
    if isinstance(raw, (dict, list)):
        return raw
    if isinstance(raw, bool):
        raise CoercionError(f"expected a JSON object, a list or a path to a JSON file, got {_short(raw)}")
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith(("{", "[")):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise CoercionError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
        return text  # a path; the consumer reads it and reports a missing file by name
    raise CoercionError(f"expected a JSON object, a list or a path to a JSON file, got {_short(raw)}")


def _read_list(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(item) for item in raw]
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                return [str(item) for item in json.loads(text)]
            except json.JSONDecodeError as exc:
                raise CoercionError(f"not a valid JSON list ({exc.msg})") from exc
        return [part.strip() for part in text.split(",") if part.strip()]
    raise CoercionError(f"expected a comma-separated list, got {_short(raw)}")


_READERS: dict[str, Callable[[Any], Any]] = {
    "bool": _read_bool,
    "int": _read_int,
    "float": _read_float,
    "str": _read_str,
    "path": _read_str,
    "json": _read_json,
    "list": _read_list,
}


@dataclass
class OptionsRegistry:
    """All options known to one run: the core's and every loaded plugin's."""

    _options: dict[str, Option] = field(default_factory=dict)
    _current_owner: str = "core"
    _aliases: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, kind: Kind, default: Any, help: str, **details: Any) -> Option:
        """Declare an option; the owner is the plugin whose ``add_options`` is running."""
        if not help:
            raise PluginError(f"plugin {self._current_owner!r}: option {name!r} has no help text")
        owner = details.pop("owner", None) or self._current_owner
        choices = details.pop("choices", None)
        families = details.pop("families", None)
        aliases = tuple(details.pop("aliases", ()) or ())
        option = Option(
            name=name,
            kind=kind,
            default=default,
            help=help,
            owner=owner,
            choices=tuple(choices) if choices is not None else None,
            families=tuple(families) if families is not None else None,
            aliases=aliases,
            **details,
        )
        existing = self._options.get(name)
        if existing is not None:
            raise PluginError(
                f"option {name!r} is declared twice: by {existing.owner!r} and by {owner!r}; "
                "one of the plugins must rename it"
            )
        self._options[name] = option
        for alias in aliases:
            if alias in self._aliases or alias in self._options:
                raise PluginError(f"option {name!r}: the alias {alias!r} is already a key or an alias")
            self._aliases[alias] = name
        return option

    def canonical(self, name: str) -> str | None:
        """The declared key ``name`` stands for: itself, the key it is an alias of, or None."""
        if name in self._options:
            return name
        return self._aliases.get(name)

    def owned_by(self, owner: str) -> OptionsRegistry:
        """Return this registry set to record ``owner`` on the options added next."""
        self._current_owner = owner
        return self

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> Option:
        return self._options[name]

    def __iter__(self) -> Iterator[Option]:
        return iter(sorted(self._options.values(), key=lambda o: (o.category, o.name)))

    def __len__(self) -> int:
        return len(self._options)

    def names(self) -> list[str]:
        return sorted(self._options)

    def by_owner(self, owner: str) -> list[Option]:
        return [o for o in self if o.owner == owner]

    def close_matches(self, name: str, extra: Iterable[str] = ()) -> list[str]:
        """The known keys closest to a misspelt ``name`` (at most three)."""
        pool: Sequence[str] = [*self._options, *extra]
        return difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
