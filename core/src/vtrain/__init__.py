"""vtrain: a plugin-based, model-agnostic trainer for diffusion models.

``from vtrain import Runner`` is resolved lazily so importing ``vtrain`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl

__all__ = ["Runner", "RunResult", "hookimpl"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from vtrain.run import RunResult
    from vtrain.runner import Runner


def __getattr__(name: str) -> Any:
    if name == "Runner":
        from vtrain.runner import Runner

        return Runner
    if name == "RunResult":
        from vtrain.run import RunResult

        return RunResult
    raise AttributeError(name)
