"""The ``vtrain`` command. Only the standard library is imported before a command needs more,
so ``vtrain --help`` and ``vtrain plugins`` answer at once."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

BUILTIN_COMMANDS = ("run", "plugins", "config", "options", "configure")

HELP = """usage: vtrain <command> [options]

A plugin-based trainer for diffusion models.

commands:
  run       train:  vtrain run --family ltxvideo --config config.json [--key value ...]
  config    check a configuration:  vtrain config validate FILE [--key value ...]
                                    vtrain config show [--config FILE] [--key value ...]
  configure step-by-step set-up that writes config.json:  vtrain configure [--output config/config.json]
  plugins   list the loaded plugins, their versions, hooks and options
  options   print the options reference (--markdown for docs/options.md)

plugin options (every command):
  -p MODULE          load a plugin module;  -p no:NAME  blocks the plugin NAME
  --plugin-file F    load a single-file plugin
  VTRAIN_DISABLE_PLUGIN_AUTOLOAD=1 turns off entry-point discovery;
  VTRAIN_PLUGINS=mod1,mod2 loads modules as -p does (autoload or not).

Plugins may add commands (for example `vtrain ltxvideo make-tiny DIR`); `vtrain plugins` lists them.
"""


def _plugin_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="load a plugin module; -p no:NAME blocks a plugin")
    parser.add_argument("--plugin-file", dest="plugin_files", action="append", default=[], metavar="PATH")


def _split_plugins(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    blocked = [s[3:] for s in specs if s.startswith("no:")]
    modules = [s for s in specs if not s.startswith("no:")]
    return modules, blocked


def _runner_from_args(args: argparse.Namespace, extra: list[str], source: str = "command line") -> Any:
    from vtrain.config import parse_cli_overrides
    from vtrain.runner import Runner

    overrides = parse_cli_overrides(extra)
    if getattr(args, "family", None):
        overrides["model_family"] = args.family
    modules, blocked = _split_plugins(args.plugins)
    return Runner.from_config(args.config, overrides=overrides, plugins=modules, plugin_files=args.plugin_files,
                              blocked=blocked, override_source=source)


def cmd_run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vtrain run", description="Train. Any --key value after the known "
                                     "flags overrides that key of the config file.")
    parser.add_argument("--family", help="the model family (sets model_family)")
    parser.add_argument("--config", help="config.json (SimpleTuner style)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show what other libraries print while they are imported (VTRAIN_VERBOSE=1)")
    _plugin_args(parser)
    args, extra = parser.parse_known_args(argv)
    if args.verbose:
        import os

        from vtrain.quiet import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    runner = _runner_from_args(args, extra)
    from vtrain.training.stopping import resume_command

    runner.resume_command = resume_command(argv)
    result = runner.run()
    return 0 if result.steps >= 0 else 1


def cmd_config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vtrain config")
    sub = parser.add_subparsers(dest="action", required=True)
    overrides_note = ("Any --key value after the known flags overrides that key of the file, as for vtrain run "
                      "(e.g. --learning_rate 2e-4); values print as `unset` where a key has no value.")
    validate = sub.add_parser("validate", help="check a config file and report every problem",
                              usage="vtrain config validate FILE [--family NAME] [-p MODULE] [--key value ...]",
                              description="Resolve FILE as vtrain run would and report every problem at once.",
                              epilog=overrides_note)
    validate.add_argument("file")
    validate.add_argument("--family")
    _plugin_args(validate)
    show = sub.add_parser("show", help="print the resolved config and where each value came from",
                          usage="vtrain config show [--config FILE] [--family NAME] [--json] [--key value ...]",
                          epilog=overrides_note + " --json prints JSON, where an unset value is null.")
    show.add_argument("--config")
    show.add_argument("--family")
    show.add_argument("--json", action="store_true")
    _plugin_args(show)
    args, extra = parser.parse_known_args(argv)
    if args.action == "validate":
        args.config = args.file
        runner = _runner_from_args(args, extra)
        print(f"{args.file}: OK ({len(runner.config.sources)} keys set, family {runner.config.model_family})")
        for notice in runner.config.notices:
            print(f"note: {notice}")
        return 0
    runner = _runner_from_args(args, extra)
    config = runner.config
    from vtrain.services.redact import redact_config

    shown = redact_config(config.to_json())  # webhook URLs, headers and tokens are never printed
    if args.json:
        print(json.dumps({k: {"value": v, "source": config.source(k)} for k, v in shown.items()}, indent=2))
        return 0
    width = max(len(k) for k in config)
    for key, value in shown.items():
        text = "unset" if value is None else json.dumps(value)
        print(f"{key:<{width}}  {text}  [{config.source(key)}]")
    for notice in config.notices:
        print(f"note: {notice}")
    return 0


def cmd_plugins(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vtrain plugins", description="List loaded plugins.")
    parser.add_argument("--json", action="store_true")
    _plugin_args(parser)
    args = parser.parse_args(argv)
    from vtrain.hooks import Hooks
    from vtrain.runner import load_plugins

    modules, blocked = _split_plugins(args.plugins)
    host, registry, families, optimizers = load_plugins(modules, args.plugin_files, blocked)
    commands = _plugin_commands(Hooks(host))
    infos = host.describe()
    for info in infos:
        info.options = [o.name for o in registry.by_owner(info.name)]
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return 0
    for info in infos:
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version}  ({info.distribution}, {info.origin})")
        print(f"  hooks:   {', '.join(info.hooks) or '-'}")
        print(f"  options: {', '.join(info.options) or '-'}")
    print(f"families:   {', '.join(sorted(families)) or 'none (install a family plugin, e.g. vtrain-ltxvideo)'}")
    print(f"optimizers: {', '.join(sorted(optimizers))}")
    if commands:
        print(f"commands:   {', '.join(sorted(commands))}")
    return 0


def cmd_configure(argv: list[str]) -> int:
    from vtrain.configure import configure

    return configure(argv)


def cmd_options(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vtrain options", description="Print the options reference.")
    parser.add_argument("--markdown", action="store_true", help="the docs/options.md page")
    _plugin_args(parser)
    args = parser.parse_args(argv)
    from vtrain.docgen import options_markdown, options_text
    from vtrain.runner import load_plugins

    modules, blocked = _split_plugins(args.plugins)
    _host, registry, _families, _optimizers = load_plugins(modules, args.plugin_files, blocked)
    print(options_markdown(registry) if args.markdown else options_text(registry), end="")
    return 0


def _plugin_commands(hooks: Any) -> dict[str, tuple[Any, str]]:
    return hooks.register_commands()


def _run_plugin_command(name: str, argv: list[str]) -> int:
    from vtrain.hooks import Hooks
    from vtrain.plugins import PluginHost

    commands = _plugin_commands(Hooks(PluginHost()))
    if name not in commands:
        import difflib

        close = difflib.get_close_matches(name, [*BUILTIN_COMMANDS, *commands], n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        print(f"vtrain: unknown command {name!r}{hint}. See vtrain --help", file=sys.stderr)
        return 2
    return int(commands[name][0](argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"vtrain {version('vtrain')}")
        return 0
    command, rest = args[0], args[1:]
    handlers = {"run": cmd_run, "config": cmd_config, "plugins": cmd_plugins, "options": cmd_options,
                "configure": cmd_configure}
    from vtrain.errors import VtrainError

    previous_term = _sigterm_interrupts()
    try:
        if command in handlers:
            return handlers[command](rest)
        return _run_plugin_command(command, rest)
    except VtrainError as exc:
        from vtrain.services.redact import redact_text

        print(redact_text(f"vtrain: {getattr(exc, 'label', 'error')}: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        name = str(exc) or "SIGINT"
        print(f"vtrain: interrupted ({name})", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    except OSError as exc:  # a disk or permission error outside a checked path: the file and the reason
        where = f" {exc.filename}" if exc.filename else ""
        from vtrain.services.redact import redact_text

        print(redact_text(f"vtrain: error:{where}: {exc.strerror or exc}"), file=sys.stderr)
        return 1
    finally:
        if previous_term is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_term)


def _sigterm_interrupts() -> Any:
    """SIGTERM (schedulers, ``docker stop``) interrupts like Ctrl-C instead of ending the process silently;
    while training, the loop's own handler takes over and stops cleanly."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(_number: int, _frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    return signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    sys.exit(main())
