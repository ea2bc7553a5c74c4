"""``vtrain configure``: a step-by-step set-up that writes ``config.json``.

It asks for the model family, then for each key of :data:`vtrain.configure_steps.ASKED_KEYS`
and the family's own keys, validating every answer with the option's ``coerce`` and warning
about common pitfalls. Only keys that differ from their defaults (plus ``model_family``) are
written. It never writes the dataloader config (``data_backend_config``).

Answers are read through an injectable ``reader`` (``input`` by default), so piped stdin and
tests drive it; end of input aborts with exit code 1 and writes nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vtrain.configure_steps import (
    applies,
    check_answer,
    cuda_available,
    data_backend_note,
    describe,
    question_keys,
    question_option,
    show_value,
)
from vtrain.errors import ConfigError, Problem
from vtrain.options import CoercionError, Option, OptionsRegistry

DEFAULT_OUTPUT = "config/config.json"
_ASK_AGAIN = object()  # a guard rail sends the question back


class ConfigureAborted(Exception):
    """The session ended without writing (end of input, or the user declined)."""


@dataclass
class Console:
    """Where questions go and answers come from."""

    reader: Callable[[str], str] = input
    out: TextIO = field(default_factory=lambda: sys.stdout)
    echo: bool = False  # print each answer after its prompt (piped stdin is not echoed by the terminal)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(self, prompt: str) -> str:
        try:
            answer = self.reader(prompt).strip()
        except EOFError:
            self.say()
            raise ConfigureAborted("end of input") from None
        if self.echo:
            self.say(answer)
        return answer

    def confirm(self, question: str, default: bool = False) -> bool:
        """A yes/no question; Enter gives ``default`` ([y/N] or [Y/n])."""
        answer = self.ask(f"{question} {'[Y/n]' if default else '[y/N]'}: ").lower()
        return default if not answer else answer in ("y", "yes")


@dataclass
class Session:
    """One configure session over a loaded plugin set."""

    registry: OptionsRegistry
    families: Sequence[str]
    optimizers: Sequence[str]
    console: Console
    cuda: Callable[[], bool] = cuda_available
    preset: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str) -> Option:
        return question_option(self.registry, key, self.optimizers, self.families)

    # -- interactive ---------------------------------------------------------------------------

    def interview(self) -> dict[str, Any]:
        """Ask every question; return the typed answers (all asked keys, defaults included)."""
        answers: dict[str, Any] = {}
        family = self.preset.get("model_family")
        if family is None:
            family = self._ask_family()
        answers["model_family"] = family
        keys = question_keys(self.registry, family)
        self.console.say(f"Configuring a {family} run: {len(keys)} questions. "
                         "Press Enter to keep the value in [brackets].")
        for number, key in enumerate(keys, 1):
            if not applies(key, answers):
                continue
            answers[key] = self._ask_key(key, answers, f"[{number}/{len(keys)}]")
        for key, value in self.preset.items():  # --set keys that were not asked are kept as given
            answers.setdefault(key, value)
        return answers

    def _ask_family(self) -> str:
        option = self.option("model_family")
        default = self.families[0]  # sorted; Enter takes it, so the default path never stops here
        self.console.say(describe(option))
        while True:
            raw = self.console.ask(f"  model_family [{show_value(default)}]: ")
            try:
                return str(option.coerce(raw or default))
            except CoercionError as exc:
                self.console.say(f"  invalid: {exc}")

    def _ask_key(self, key: str, answers: Mapping[str, Any], counter: str) -> Any:
        option = self.option(key)
        default = self.preset.get(key, option.default)
        self.console.say(f"{counter} {describe(option)}")
        while True:
            raw = self.console.ask(f"  {key} [{show_value(default)}]: ")
            if raw:
                try:
                    value = option.coerce(raw)
                except CoercionError as exc:
                    self.console.say(f"  invalid: {exc}")
                    continue
            else:
                value = default
            checked = self._apply_guard_rails(key, value, answers)
            if checked is not _ASK_AGAIN:
                return checked

    def _apply_guard_rails(self, key: str, value: Any, answers: Mapping[str, Any]) -> Any:
        """The value to keep for ``key``, or ``_ASK_AGAIN``.

        A refusal asks again. A warning with a recommended value asks "keep this value? [y/N]" and
        Enter takes the recommendation; a warning without one asks "[Y/n]" and Enter keeps the value.
        So pressing Enter at every prompt always moves on (a guard rail never traps the default path).
        """
        for rail in check_answer(key, value, answers, self.cuda):
            if rail.refuse:
                self.console.say(f"  refused: {rail.reason}")
                return _ASK_AGAIN
            self.console.say(f"  warning: {rail.reason}")
            if rail.has_recommendation:
                shown = show_value(rail.recommended)
                if not self.console.confirm(f"  keep this value? (no: use the recommended {shown})"):
                    self.console.say(f"  {key} = {shown}")
                    return self._apply_guard_rails(key, rail.recommended, answers)
            elif not self.console.confirm("  keep this value? (no: answer again)", default=True):
                return _ASK_AGAIN
        if key == "data_backend_config":
            note = data_backend_note(value)
            if note:
                self.console.say(f"  note: {note}")
        return value

    # -- non-interactive -----------------------------------------------------------------------

    def check_preset(self) -> dict[str, Any]:
        """The ``--set`` values as answers; guard rails are printed, refusals raise ConfigError."""
        family = self.preset.get("model_family")
        if not family:
            raise ConfigError([Problem("vtrain configure", "no model family chosen",
                                       f"pass --family NAME (installed: {', '.join(self.families) or 'none'})")])
        answers = dict(self.preset)
        effective = {k: answers.get(k, self.registry[k].default) for k in question_keys(self.registry, family)}
        effective.update(answers)
        problems = []
        for key, value in effective.items():
            for rail in check_answer(key, value, effective, self.cuda):
                if rail.refuse:
                    problems.append(Problem(f"--set {key}", rail.reason))
                else:
                    self.console.say(f"warning: {rail.reason}")
        note = data_backend_note(answers.get("data_backend_config"))
        if note:
            self.console.say(f"note: {note}")
        if problems:
            raise ConfigError(problems)
        return answers


def parse_sets(items: Sequence[str], registry: OptionsRegistry, optimizers: Sequence[str],
               families: Sequence[str]) -> dict[str, Any]:
    """Read ``key=value`` pairs, typed by the registry; every bad pair is reported together."""
    from vtrain.config import normalise_key

    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = normalise_key(key)
        if not sep or not key:
            problems.append(Problem(f"--set {item!r}", "expected key=value", "write e.g. --set learning_rate=1e-4"))
            continue
        if key not in registry:
            close = registry.close_matches(key)
            problems.append(Problem(f"--set {key}", "unknown key",
                                    f"did you mean {' or '.join(close)}?" if close else "see `vtrain options`"))
            continue
        try:
            values[key] = question_option(registry, key, optimizers, families).coerce(raw)
        except CoercionError as exc:
            problems.append(Problem(f"--set {key}", str(exc)))
    if problems:
        raise ConfigError(problems)
    return values


def changed_values(answers: Mapping[str, Any], registry: OptionsRegistry) -> dict[str, Any]:
    """The answers that differ from their option's default, plus ``model_family``."""
    result = {"model_family": answers["model_family"]}
    for key, value in answers.items():
        if key in registry and value != registry[key].default:
            result[key] = value
    return result


def validate_written(path: Path, data_backend: Any, plugin_args: Mapping[str, Any]) -> tuple[list[Problem], list[Problem]]:
    """Resolve the written file as ``vtrain run`` would; return (errors, warnings).

    A dataloader config that does not exist yet is only a warning here: configure does not write it.
    """
    from vtrain.runner import Runner

    try:
        Runner.from_config(str(path), **plugin_args)
    except ConfigError as error:
        missing = isinstance(data_backend, str) and not Path(data_backend).is_file()
        warnings = [p for p in error.problems
                    if missing and (p.where == data_backend or p.where.startswith("data_backend_config"))]
        return [p for p in error.problems if p not in warnings], warnings
    return [], []


def write_config(answers: Mapping[str, Any], output: Path, session: Session, interactive: bool, force: bool,
                 plugin_args: Mapping[str, Any]) -> int:
    """Write the short config, validate it, print the run command; return the exit code."""
    from vtrain.atomic import atomic_write_json

    console = session.console
    data = changed_values(answers, session.registry)
    if output.exists() and not force:
        if not interactive:
            raise ConfigError([Problem(str(output), "the file exists; configure does not overwrite it",
                                       "choose another --output, or pass --force")])
        if not console.confirm(f"{output} exists. Overwrite it?"):
            raise ConfigureAborted(f"{output} kept")
    atomic_write_json(output, data)
    console.say(f"wrote {output} ({len(data)} keys)")
    errors, warnings = validate_written(output, data.get("data_backend_config"), plugin_args)
    for problem in warnings:
        console.say(f"warning: {problem}")
    if errors:
        console.say(str(ConfigError(errors)))
        console.say(f"{output} was written; fix these problems in it, then check with "
                    f"vtrain config validate {shlex.quote(str(output))}")
        return 2
    console.say("the config resolves without problems" + (" (apart from the warnings above)" if warnings else ""))
    console.say(f"train with:  vtrain run --config {shlex.quote(str(output))}")
    return 0


def configure(argv: Sequence[str], reader: Callable[[str], str] = input, out: TextIO | None = None,
              cuda: Callable[[], bool] = cuda_available) -> int:
    """The ``vtrain configure`` command; ``reader``, ``out`` and ``cuda`` are injectable for tests."""
    parser = argparse.ArgumentParser(prog="vtrain configure",
                                     description="Step-by-step set-up that writes config.json (not the dataloader config).")
    parser.add_argument("--output", "-o", default=DEFAULT_OUTPUT, help=f"the file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--family", help="the model family (skips that question)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a value to write (non-interactive) or to offer as the default (interactive)")
    parser.add_argument("--non-interactive", "--defaults", dest="non_interactive", action="store_true",
                        help="ask nothing: write the --set values (unset keys keep their defaults)")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="load a plugin module; -p no:NAME blocks a plugin")
    parser.add_argument("--plugin-file", dest="plugin_files", action="append", default=[], metavar="PATH")
    args = parser.parse_args(list(argv))
    from vtrain.runner import load_plugins

    modules = [s for s in args.plugins if not s.startswith("no:")]
    blocked = [s[3:] for s in args.plugins if s.startswith("no:")]
    plugin_args = {"plugins": modules, "plugin_files": args.plugin_files, "blocked": blocked}
    _host, registry, families, optimizers = load_plugins(modules, args.plugin_files, blocked)
    family_names, optimizer_names = sorted(families), sorted(optimizers)
    if not family_names:
        raise ConfigError([Problem("vtrain configure", "no model family is installed",
                                   "install a family plugin, e.g. pip install vtrain-ltxvideo")])
    preset = parse_sets(args.sets, registry, optimizer_names, family_names)
    if args.family:
        from vtrain.family import family_aliases

        preset["model_family"] = family_aliases(families).get(args.family, args.family)  # ltxvideo2 -> ltx2
    if preset.get("model_family") is not None and preset["model_family"] not in family_names:
        raise ConfigError([Problem("--family", f"unknown model family {preset['model_family']!r}",
                                   f"installed families: {', '.join(family_names)}")])
    console = Console(reader=reader, out=out or sys.stdout, echo=reader is input and not sys.stdin.isatty())
    session = Session(registry, family_names, optimizer_names, console, cuda=cuda, preset=preset)
    try:
        answers = session.check_preset() if args.non_interactive else session.interview()
        return write_config(answers, Path(args.output), session, not args.non_interactive, args.force, plugin_args)
    except ConfigureAborted as stop:
        print(f"vtrain configure: aborted ({stop}); nothing written", file=sys.stderr)
        return 1

