"""Reading ``tread_config``: SimpleTuner's shape, checked with messages that name the route and the fix.

``{"routes": [{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}, ...]}``, given as an
object, a JSON string or the path of a JSON file. ``selection_ratio`` is the share of tokens that skip
the route's blocks (SimpleTuner's meaning: 0.5 keeps half); the start and end blocks are both routed;
negative indices count from the last block (-1 is the last).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY = "tread_config"
ROUTE_KEYS = ("selection_ratio", "start_layer_idx", "end_layer_idx")
EXAMPLE = '{"routes": [{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}]}'


class TreadConfigError(ValueError):
    """``tread_config`` is malformed: ``message`` says what, ``fix`` what to write instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class Route:
    """One routed span: ``selection_ratio`` of the tokens skip blocks ``start`` .. ``end`` (inclusive).

    Indices are as written (negative ones count from the end) until :meth:`resolve` fixes them.
    """

    selection_ratio: float
    start: int
    end: int

    def resolve(self, blocks: int) -> Route:
        """The route with non-negative indices for a model of ``blocks`` blocks (checked)."""
        start = self.start + blocks if self.start < 0 else self.start
        end = self.end + blocks if self.end < 0 else self.end
        for name, written, index in (("start_layer_idx", self.start, start), ("end_layer_idx", self.end, end)):
            if not 0 <= index < blocks:
                raise TreadConfigError(
                    f"{name} {written} is outside the model's {blocks} transformer blocks",
                    f"use an index from 0 to {blocks - 1} (or -1 to -{blocks}, counting from the last block)")
        if end < start:
            raise TreadConfigError(
                f"end_layer_idx {self.end} (block {end}) comes before start_layer_idx {self.start} (block {start}) "
                f"in a model of {blocks} blocks", "set end_layer_idx to the start block or a later one")
        return Route(self.selection_ratio, start, end)

    def kept(self, tokens: int) -> int:
        """Tokens that go through the route's blocks: all but round(tokens * ratio), at least one."""
        return max(1, tokens - int(round(tokens * self.selection_ratio)))


def is_set(value: Any) -> bool:
    """Whether ``tread_config`` asks for routing: unset, null and an empty string mean off."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def load(value: Any) -> dict[str, Any]:
    """The ``tread_config`` object: ``value`` itself, or the JSON file a string names."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise TreadConfigError(f"{value!r} is neither a JSON object nor an existing JSON file",
                                   f"write the object inline, e.g. {EXAMPLE}, or point {KEY} at a JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TreadConfigError(f"the file {path} is not valid JSON ({exc})",
                                   f"write a JSON object like {EXAMPLE} into {path}") from exc
        if not isinstance(data, dict):
            raise TreadConfigError(f"the file {path} holds a JSON {type(data).__name__}, not an object",
                                   f"write a JSON object like {EXAMPLE} into {path}")
        return data
    raise TreadConfigError(f"expected a JSON object with 'routes', got a {type(value).__name__}",
                           f"write it as {EXAMPLE}")


def parse(value: Any) -> list[Route]:
    """The routes of ``tread_config``, sorted by start index as written; shape and value ranges checked."""
    data = load(value)
    unknown = sorted(set(data) - {"routes"})
    if unknown:
        raise TreadConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                               "(the object holds only 'routes')", f"write it as {EXAMPLE}")
    routes = data.get("routes")
    if not isinstance(routes, list) or not routes:
        raise TreadConfigError("TREAD needs a non-empty 'routes' list", f"write it as {EXAMPLE}")
    return [_route(index, item) for index, item in enumerate(routes)]


def _route(index: int, item: Any) -> Route:
    where = f"routes[{index}]"
    if not isinstance(item, dict):
        raise TreadConfigError(f"{where} is a {type(item).__name__}, not an object",
                               'write each route as {"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}')
    for key in sorted(set(item) - set(ROUTE_KEYS)):
        close = difflib.get_close_matches(key, ROUTE_KEYS, n=1)
        raise TreadConfigError(f"{where} has the unknown key {key!r}",
                               f"did you mean {close[0]!r}?" if close else f"a route has only {', '.join(ROUTE_KEYS)}")
    missing = [key for key in ROUTE_KEYS if key not in item]
    if missing:
        raise TreadConfigError(f"{where} lacks {', '.join(missing)}", f"give every route {', '.join(ROUTE_KEYS)}")
    ratio = item["selection_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise TreadConfigError(f"{where}.selection_ratio is {ratio!r}; it is the share of tokens that skip the "
                               "route's blocks and must be at least 0 and below 1",
                               "use a value in [0, 1), e.g. 0.5 (half the tokens skip); 0.1-0.25 keep quality best")
    indices = []
    for key in ("start_layer_idx", "end_layer_idx"):
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TreadConfigError(f"{where}.{key} is {value!r}, not a whole number",
                                   "use a block index (0-based; negative counts from the last block)")
        indices.append(value)
    start, end = indices
    if (start >= 0) == (end >= 0) and end < start:
        raise TreadConfigError(f"{where}.end_layer_idx {end} comes before start_layer_idx {start}",
                               "set end_layer_idx to the start block or a later one (the end block is routed too)")
    return Route(float(ratio), start, end)


def resolve(routes: list[Route], blocks: int) -> list[Route]:
    """Routes with non-negative indices, sorted; refused when one leaves the model or two overlap."""
    resolved = []
    for index, route in enumerate(routes):
        try:
            resolved.append(route.resolve(blocks))
        except TreadConfigError as exc:
            raise TreadConfigError(f"routes[{index}]: {exc.message}", exc.fix) from None
    resolved.sort(key=lambda r: r.start)
    for before, after in zip(resolved, resolved[1:]):
        if after.start <= before.end:
            raise TreadConfigError(f"the routes over blocks {before.start}-{before.end} and {after.start}-{after.end} "
                                   "overlap", "give each block to one route at most")
    return resolved
