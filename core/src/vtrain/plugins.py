"""Finding, loading and checking plugins. One :class:`PluginHost` per run: no module globals."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from vtrain import hookspecs
from vtrain.errors import PluginError

ENTRY_POINT_GROUP = "vtrain"
DISABLE_AUTOLOAD_ENV = "VTRAIN_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "VTRAIN_PLUGINS"  # comma-separated modules loaded as with -p (like PYTEST_PLUGINS); tests use it


@dataclass
class PluginInfo:
    """What ``vtrain plugins`` shows about one loaded plugin."""

    name: str
    distribution: str
    version: str
    origin: str  # "entry point", "-p", "--plugin-file", "builtin", "in-process"
    hooks: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def autoload_enabled(explicit: bool | None) -> bool:
    if explicit is not None:
        return explicit
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")


def env_plugins() -> list[str]:
    """The modules named in ``VTRAIN_PLUGINS`` (comma-separated), loaded whether or not autoload is on."""
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def _version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _load_plugin_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"--plugin-file {path}: file not found")
    module_name = f"vtrain_plugin_file_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"--plugin-file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PluginError(f"--plugin-file {path}: failed to import: {type(exc).__name__}: {exc}") from exc
    return module


class PluginHost:
    """Owns one pluggy ``PluginManager`` and knows where each plugin came from.

    :param builtins: plugin objects registered first, under fixed names (the core's own).
    :param plugins: plugin objects passed in-process, or module names (as ``-p module``).
    :param plugin_files: paths of single-file plugins (``--plugin-file``).
    :param blocked: plugin names never to load (``-p no:name``).
    :param autoload: load entry points of the ``vtrain`` group; ``None`` follows
        ``VTRAIN_DISABLE_PLUGIN_AUTOLOAD``. Modules named in ``VTRAIN_PLUGINS`` load either way.
    """

    def __init__(
        self,
        builtins: Sequence[tuple[str, object]] = (),
        plugins: Sequence[object | str] = (),
        plugin_files: Sequence[str | Path] = (),
        blocked: Sequence[str] = (),
        autoload: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        for name in blocked:
            self.pm.set_blocked(name)
        for name, plugin in builtins:
            self._register(plugin, name, PluginInfo(name, "vtrain", _version_of("vtrain"), "builtin"))
        if autoload_enabled(autoload):
            self._load_entry_points()
        for item in [*env_plugins(), *plugins]:
            if isinstance(item, str):
                self._load_module(item)
            else:
                name = getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__
                self._register(item, str(name), PluginInfo(str(name), "in-process", "", "in-process"))
        for path in plugin_files:
            module = _load_plugin_file(Path(path))
            name = Path(path).stem
            self._register(module, name, PluginInfo(name, str(path), "", "--plugin-file"))
        self._check()

    # -- loading -----------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.pm.is_blocked(ep.name):
                continue
            dist_name = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (distribution {dist_name}) failed to load: {type(exc).__name__}: {exc}. "
                    f"Reinstall or upgrade {dist_name}, or skip it with -p no:{ep.name}"
                ) from exc
            version = ep.dist.version if ep.dist is not None else "unknown"
            self._register(plugin, ep.name, PluginInfo(ep.name, dist_name, version, "entry point"))

    def _load_module(self, spec: str) -> None:
        if spec.startswith("no:"):
            raise PluginError(f"-p {spec}: blocking must be given before plugins are loaded")
        if self.pm.is_blocked(spec):
            return
        try:
            module = importlib.import_module(spec)
        except Exception as exc:
            raise PluginError(f"-p {spec}: module failed to import: {type(exc).__name__}: {exc}") from exc
        dist = _distribution_of_module(spec)
        self._register(module, spec, PluginInfo(spec, dist or "local module", _version_of(dist) if dist else "", "-p"))

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        if self.pm.is_blocked(name):
            return
        if self.pm.get_plugin(name) is not None or self.pm.is_registered(plugin):
            return  # the same plugin asked for twice (entry point and -p, or two names): load once
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({info.distribution}) is invalid: {exc}") from exc
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} ({info.distribution}) could not be registered: {exc}") from exc
        self.info[name] = info

    def _check(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin_name = self.pm.get_name(exc.plugin) if exc.plugin is not None else "?"
            raise PluginError(
                f"plugin {plugin_name!r} implements a hook that does not exist: {exc}. "
                "Check the spelling against docs/writing-a-plugin.md"
            ) from exc

    # -- queries -----------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def names(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with the hooks it implements (options are filled in by the caller)."""
        result = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            info = self.info.get(name) or PluginInfo(name, "?", "", "?")
            callers = self.pm.get_hookcallers(plugin) or []
            info.hooks = sorted(caller.name for caller in callers)
            result.append(info)
        return sorted(result, key=lambda i: (i.origin != "builtin", i.name))


def _distribution_of_module(module_name: str) -> str | None:
    top = module_name.split(".")[0]
    mapping: Callable[[], Any] = getattr(metadata, "packages_distributions", lambda: {})
    dists = mapping().get(top)
    return dists[0] if dists else None
