"""vtrain-serve's hooks. Only light imports here: ``vtrain --help`` and ``vtrain plugins`` import this file."""

from __future__ import annotations

from collections.abc import Callable

from vtrain.hookspecs import hookimpl


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """``vtrain serve [--host H] [--port P] [DIR ...]``."""
    from vtrain_serve.command import run_serve_command

    register("serve", run_serve_command,
             help="web dashboard: vtrain serve [--host 127.0.0.1] [--port 8765] [DIR ...] watches, compares, "
                  "starts and stops the runs under DIR")
