"""Reading configuration: SimpleTuner-style ``config.json`` files, overrides, provenance.

Values come in layers (defaults < config file < overrides). Every key is checked against the
options registry and every problem is collected, so the user sees all of them at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtrain import catalog
from vtrain.errors import ConfigError, Problem, ProblemCollector
from vtrain.options import CoercionError, OptionsRegistry

FAMILY_KEY = "model_family"
FAMILY_DEFAULT = "family default"


def normalise_key(key: str) -> str:
    """``--learning-rate`` and ``learning_rate`` name the same option."""
    return key.strip().lstrip("-").replace("-", "_")


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (``json`` would silently keep the last)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def parse_json_text(text: str) -> Any:
    """``json.loads`` that refuses a key written twice in one object (raises :class:`DuplicateKeyError`)."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


def read_json_file(path: str | Path, what: str = "config file") -> Any:
    """Read a JSON file, turning a missing file or a syntax error into a :class:`ConfigError`.

    A UTF-8 byte-order mark (which some editors write) is accepted; a syntax error comes with the
    hint that matches it (comments, trailing comma, single quotes...).
    """
    file = Path(path)
    if not file.exists():
        raise ConfigError([Problem(str(file), f"{what} not found", "check the path (relative paths start at the current directory)")])
    if file.is_dir():
        raise ConfigError([Problem(str(file), f"{what} is a directory, expected a JSON file")])
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(file), f"{what} is not UTF-8 text", "save the file as UTF-8")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(file), f"cannot read the {what}: {exc.strerror}")]) from None
    try:
        return parse_json_text(text)
    except DuplicateKeyError as exc:
        raise ConfigError([Problem(f"{file}: {exc}", "the key is written twice in one object; JSON keeps only the last",
                                   "keep one of them")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem(str(file), f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                     json_hint(text, exc))]
        ) from None


def json_hint(text: str, exc: json.JSONDecodeError) -> str:
    """The fix that matches a JSON syntax error (not always "a trailing comma")."""
    import re

    if re.search(r"^\s*(//|#)|/\*|[,{\[]\s*//", text, flags=re.MULTILINE):
        return "JSON has no comments: remove the // or /* */ or # lines (or move notes into a key of their own)"
    before = text[: exc.pos].rstrip()
    after = text[exc.pos:].lstrip()
    if before.endswith(",") and after[:1] in ("}", "]"):
        return "remove the trailing comma after the last item of the object or list"
    if after[:1] == "'":
        return "JSON strings and keys take double quotes (\"), not single quotes"
    if exc.msg.startswith("Expecting property name"):
        return "keys must be in double quotes, and the last item takes no comma"
    if exc.msg.startswith("Extra data"):
        return "the file holds more than one JSON value: wrap the settings in one { ... } object"
    if exc.msg.startswith("Expecting ',' delimiter"):
        return "a comma is missing between two items (or a quote is not closed)"
    if exc.msg.startswith("Expecting value") and not after:
        return "the file is empty or ends too early: write a { ... } object"
    if exc.msg.startswith("Expecting value"):
        return "a value is missing or is not JSON (strings take double quotes; true, false and null are lowercase)"
    return "fix the JSON syntax at that position"


@dataclass(frozen=True)
class ConfigLayer:
    """One source of values: its name (for provenance) and its raw key/value pairs."""

    source: str
    values: Mapping[str, Any]

    @classmethod
    def from_file(cls, path: str | Path) -> ConfigLayer:
        data = read_json_file(path)
        if not isinstance(data, dict):
            raise ConfigError([Problem(str(path), f"expected a JSON object of key/value pairs, got {type(data).__name__}")])
        return cls(str(path), data)


class _FlagWithoutValue:
    """The value of a bare ``--flag``: true for a boolean key, an error for any other."""

    def __repr__(self) -> str:
        return "<no value>"


FLAG_WITHOUT_VALUE = _FlagWithoutValue()


def parse_cli_overrides(args: Iterable[str]) -> dict[str, Any]:
    """Read ``--key value``, ``--key=value`` and bare ``--flag`` pairs.

    A bare flag gets :data:`FLAG_WITHOUT_VALUE`, which :func:`resolve_config` reads as true for a
    boolean key and refuses for any other. A key given twice (``--seed 1 --seed 2``, or
    ``--learning-rate`` and ``--learning_rate``) is refused.
    """
    items = list(args)
    result: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    problems = ProblemCollector()
    index = 0
    while index < len(items):
        token = items[index]
        if not token.startswith("--"):
            raise ConfigError([Problem(f"command line: {token!r}", "expected --key value", "write options as --key value or --key=value")])
        if "=" in token:
            key, value = token.split("=", 1)
            index += 1
        elif index + 1 < len(items) and not items[index + 1].startswith("--"):
            key, value = token, items[index + 1]
            index += 2
        else:
            key, value = token, FLAG_WITHOUT_VALUE
            index += 1
        name = normalise_key(key)
        if name in result:
            problems.add(f"command line: {name}", f"given twice (as {spelled[name]} and as {key})",
                         "keep one of them")
        spelled[name] = key
        result[name] = value
    problems.raise_if_any()
    return result


@dataclass
class ResolvedConfig(Mapping[str, Any]):
    """The run's configuration: every declared key with its typed value and where it came from.

    Read values as ``config.learning_rate`` or ``config["learning_rate"]``.
    """

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"no option named {name!r}")

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")

    def explicitly_set(self, key: str) -> bool:
        """Whether the user set ``key`` (a family's recommended default does not count)."""
        source = self.source(key)
        return source != "default" and not source.startswith(FAMILY_DEFAULT)

    def to_json(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in sorted(self.values.items())}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return value


def resolve_config(
    registry: OptionsRegistry,
    layers: Iterable[ConfigLayer],
    families: Iterable[str] | Mapping[str, Any],
) -> ResolvedConfig:
    """Validate and merge ``layers`` over the registry's defaults.

    ``families`` are the registered family names, or name -> family object; with objects, a family's
    ``traits.aliases`` are accepted as ``model_family`` and its ``traits.simpletuner_sections`` are read
    as its own SimpleTuner settings.

    Raises :class:`ConfigError` listing every problem: unknown keys (with close matches), keys of
    plugins that are not installed (naming the distribution), wrong types or ranges, keys of
    features not built yet, keys that belong to another family.
    """
    from vtrain.family import family_aliases

    layers = list(layers)
    table: Mapping[str, Any] = families if isinstance(families, Mapping) else dict.fromkeys(families)
    aliases = family_aliases(table)
    chosen = _chosen_family(layers, aliases)
    traits = getattr(table.get(chosen or ""), "traits", None)
    own_sections = tuple(getattr(traits, "simpletuner_sections", ()) or ())
    own_refusals = dict(getattr(traits, "simpletuner_refusals", {}) or {})
    problems = ProblemCollector()
    values: dict[str, Any] = {option.name: option.default for option in registry}
    sources: dict[str, str] = {}
    notices: list[str] = []
    for layer in layers:
        spelled: dict[str, str] = {}
        for raw_key, raw_value in layer.values.items():
            key = normalise_key(raw_key)
            where = f"{layer.source}: {key}"
            source = layer.source
            canonical = registry.canonical(key)
            if key == FAMILY_KEY and isinstance(raw_value, str) and raw_value.strip() in aliases:
                notices.append(f"{where}: {raw_value.strip()!r} is read as the {aliases[raw_value.strip()]!r} family "
                               "(the name SimpleTuner gives it)")
                raw_value = aliases[raw_value.strip()]
            if canonical is not None and _belongs_to_other_family(registry[canonical], chosen, table) \
                    and key in _simpletuner_keys():  # declared for another family: SimpleTuner may accept it here
                verdict = _simpletuner_verdict(registry, key, raw_value, own_sections, own_refusals)
                if verdict is not None and verdict.kind == "notice":
                    notices.append(f"{where}: accepted, no effect in vtrain: {verdict.reason}")
                    continue
            if canonical is None:
                verdict = _simpletuner_verdict(registry, key, raw_value, own_sections, own_refusals)
                if verdict is None:
                    _report_unknown_key(problems, registry, key, where)
                    continue
                if verdict.kind == "notice":
                    notices.append(f"{where}: accepted, no effect in vtrain: {verdict.reason}")
                    continue
                if verdict.kind == "refuse":
                    problems.add(where, verdict.reason, verdict.fix)
                    continue
                canonical = verdict.target
                raw_value = raw_value if verdict.value is None else verdict.value
            if canonical in spelled:
                problems.add(where, f"set twice in one place, as {spelled[canonical]!r} and as {raw_key!r}; "
                                    "only one value can be used", "keep one of them")
                continue
            spelled[canonical] = raw_key
            if canonical != key:
                source = f"{layer.source} (as {key})"
                where = f"{layer.source}: {key} (read as {canonical})"
            option = registry[canonical]
            if raw_value is FLAG_WITHOUT_VALUE:
                if option.kind != "bool":
                    problems.add(where, "given without a value", f"write --{key} VALUE ({option.kind}); "
                                 "only true/false keys may be given as a bare flag")
                    continue
                raw_value = True
            try:
                values[canonical] = option.coerce(raw_value)
            except CoercionError as exc:
                message = str(exc)
                if canonical in _secret_keys():
                    message = message.split(", got ")[0]  # never echo a secret-bearing value
                problems.add(where, message, _type_fix(registry, canonical))
                continue
            sources[canonical] = source

    family = values.get(FAMILY_KEY)
    known_families = sorted(families)
    if not family:
        problems.add(FAMILY_KEY, "no model family chosen",
                     f"set model_family (or --family); installed families: {', '.join(known_families) or 'none'}")
    elif family not in known_families:
        dist = catalog.distribution_for_family(family)
        if dist and catalog.is_installed(dist):
            problems.add(f"{sources.get(FAMILY_KEY, 'config')}: {FAMILY_KEY}",
                         f"{dist} is installed but does not register the family {family!r} "
                         "(it is blocked, or this version does not provide it yet)",
                         f"remove -p no:{family} if given, or upgrade {dist}")
        elif dist:
            problems.add(f"{sources.get(FAMILY_KEY, 'config')}: {FAMILY_KEY}",
                         f"family {family!r} is provided by the plugin distribution {dist}, which is not installed",
                         f"pip install {dist}")
        else:
            close = ", ".join(_close(family, known_families)) or ", ".join(known_families) or "none"
            problems.add(f"{sources.get(FAMILY_KEY, 'config')}: {FAMILY_KEY}", f"unknown model family {family!r}",
                         f"installed families: {close}")

    for key, source in sources.items():
        option = registry[key]
        where = f"{source}: {key}"
        if option.status == "planned" and values[key] != option.default:
            problems.add(where, f"not supported yet: {option.planned_note or 'this feature is planned'}",
                         f"remove the key or set it to its default ({option.default!r})")
        if option.families is not None and family and family in known_families and family not in option.families:
            problems.add(where, f"applies only to the {', '.join(option.families)} famil{'y' if len(option.families) == 1 else 'ies'}, "
                                f"not to {family!r}", "remove the key")
    problems.raise_if_any()
    return ResolvedConfig(values, sources, notices)


def apply_family_defaults(config: ResolvedConfig, family_name: str, defaults: Iterable[Any]) -> list[str]:
    """Apply a family's recommended defaults (:class:`vtrain.family.FamilyDefault`) to ``config``.

    Each group applies only when the config sets none of its ``unless_set`` keys; the values get
    the source ``family default (<family>)`` so ``vtrain config show`` says where they came from.
    Returns one line per applied group, for the start-up summary.
    """
    applied = []
    for group in defaults:
        if any(config.explicitly_set(key) for key in group.unless_set):
            continue
        for key, value in group.values.items():
            config.values[key] = value
            config.sources[key] = f"{FAMILY_DEFAULT} ({family_name})"
        settings = ", ".join(f"{k}={v}" for k, v in group.values.items())
        applied.append(f"{settings} ({group.reason})")
    return applied


def _secret_keys() -> frozenset[str]:
    from vtrain.services.redact import SECRET_KEYS

    return SECRET_KEYS


def _close(word: str, pool: Iterable[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(word, list(pool), n=3, cutoff=0.5)


def _chosen_family(layers: list[ConfigLayer], aliases: Mapping[str, str]) -> str | None:
    """The family the layers select (the last layer that sets ``model_family`` wins), aliases resolved."""
    chosen = None
    for layer in layers:
        for raw_key, raw_value in layer.values.items():
            if normalise_key(raw_key) == FAMILY_KEY and isinstance(raw_value, str) and raw_value.strip():
                chosen = aliases.get(raw_value.strip(), raw_value.strip())
    return chosen


def _belongs_to_other_family(option: Any, chosen: str | None, table: Mapping[str, Any]) -> bool:
    return bool(option.families is not None and chosen in table and chosen not in option.families)


def _simpletuner_keys() -> Mapping[str, Any]:
    from vtrain.simpletuner_keys import SIMPLETUNER_KEYS

    return SIMPLETUNER_KEYS


def _simpletuner_verdict(registry: OptionsRegistry, key: str, value: Any, own_sections: tuple[str, ...] = (),
                         own_refusals: Mapping[str, str] | None = None) -> Any:
    """How SimpleTuner's reading of ``key`` carries over (None: SimpleTuner does not know it either).

    A key of a vtrain plugin that is not installed is reported as such, not as SimpleTuner's.
    ``own_sections`` are the SimpleTuner sections of the selected family (not another family's).
    """
    from vtrain.simpletuner import NO_EFFECT, classify

    if catalog.distribution_for_key(key) and key not in registry and key not in NO_EFFECT:
        prefix = next((p for d in catalog.KNOWN_DISTRIBUTIONS for p in d.key_prefixes if key.startswith(p)), None)
        plugin_loaded = prefix is not None and any(name.startswith(prefix) for name in registry.names())
        if not plugin_loaded:  # the plugin that declares the key is missing or blocked: say so
            return None
    verdict = classify(key, value, own_sections, own_refusals)
    if verdict.kind == "unknown" or (verdict.kind == "alias" and verdict.target not in registry):
        return None
    return verdict


def _report_unknown_key(problems: ProblemCollector, registry: OptionsRegistry, key: str, where: str) -> None:
    dist = catalog.distribution_for_key(key)
    if dist:
        problems.add(where, f"this key belongs to the plugin distribution {dist}, which is not installed (or is blocked)",
                     f"pip install {dist}, or remove the key")
        return
    matches = registry.close_matches(key)
    fix = f"did you mean {' or '.join(matches)}?" if matches else "see docs/options.md for every key"
    problems.add(where, "unknown key", fix)


def _type_fix(registry: OptionsRegistry, key: str) -> str:
    option = registry[key]
    if option.choices:
        return f"use one of: {', '.join(map(str, option.choices))}"
    limits = []
    if option.minimum is not None:
        limits.append(f"at least {option.minimum:g}")
    if option.maximum is not None:
        limits.append(f"at most {option.maximum:g}")
    bounds = f", {' and '.join(limits)}" if limits else ""
    return f"{key} takes a {option.kind} value{bounds} (default {option.default!r})"
