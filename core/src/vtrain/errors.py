"""Error types that the CLI turns into clear messages (exit code 2, no traceback)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One problem found in the user's input.

    ``where`` names the file, key or plugin; ``message`` says what is wrong; ``fix`` says what to do.
    """

    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class VtrainError(Exception):
    """Base class for errors that are the user's to fix; the CLI prints them without a traceback."""

    exit_code = 2


@dataclass
class ConfigError(VtrainError):
    """Every problem found in a configuration, reported together."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


class PluginError(VtrainError):
    """A plugin failed to load, or declares something invalid."""


class TrainingError(VtrainError):
    """Training cannot go on (for example a non-finite loss); the message names the step and the terms."""

    exit_code = 3


class ProblemCollector:
    """Collects problems so a validation pass can report all of them at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(where, message, fix))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(list(self.problems))

    def __bool__(self) -> bool:
        return bool(self.problems)
