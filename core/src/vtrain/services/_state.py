"""Per-run state of the service plugins, kept on the run's :class:`~vtrain.family.ModelBundle`.

Plugins are loaded once per process but a process may hold several runs (tests, notebooks), so
a service never keeps run state in module globals. Hooks that see only the bundle (``validate``,
``save_model``) find the state under the service's key in ``bundle.meta``.
"""

from __future__ import annotations

from typing import Any

_PREFIX = "vtrain.services."


def attach(bundle: Any, name: str, state: Any) -> None:
    """Store ``state`` as service ``name``'s per-run state on ``bundle``."""
    bundle.meta[_PREFIX + name] = state


def lookup(bundle: Any, name: str) -> Any:
    """Service ``name``'s per-run state on ``bundle``, or ``None``."""
    if bundle is None:
        return None
    return bundle.meta.get(_PREFIX + name)
