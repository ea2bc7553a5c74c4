"""Starting, stopping and resuming runs from the dashboard, and the options registry as JSON.

A run started here is ``python -m vtrain run --config <output_dir>/.serve/config.json`` in its own
session (an argument list, never a shell), with its output in ``<output_dir>/.serve/log.txt``; it
outlives a page reload and the dashboard itself. Stop sends SIGINT, exactly what Ctrl-C sends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from vtrain_serve.runs import SERVE_DIR, lock_holder, pid_alive, read_json


class Refusal(Exception):
    """A start/stop/resume the dashboard will not do; ``problems`` are shown in the page."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems


def _problem(where: str, message: str, fix: str = "") -> dict[str, str]:
    return {"where": where, "message": message, "fix": fix}


def options_json() -> dict[str, Any]:
    """Every option of the registry (the same source as the CLI and docs/options.md) and the families."""
    from vtrain.runner import load_plugins

    _host, registry, families, optimizers = load_plugins()
    options = [{"name": o.name, "kind": o.kind, "default": _plain(o.default), "help": o.help, "owner": o.owner,
                "choices": None if o.choices is None else [_plain(c) for c in o.choices], "minimum": o.minimum,
                "maximum": o.maximum, "families": o.families, "status": o.status, "category": o.category}
               for o in registry]
    return {"options": options, "families": sorted(families), "optimizers": sorted(optimizers)}


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def validate(config: dict[str, Any]) -> tuple[Any, list[dict[str, str]]]:
    """The resolved config and every problem the options registry and the plugins find in ``config``."""
    from vtrain.errors import ConfigError, VtrainError
    from vtrain.runner import Runner

    try:
        return Runner.from_config(config).config, []
    except ConfigError as error:
        return None, [{"where": p.where, "message": p.message, "fix": p.fix} for p in error.problems]
    except VtrainError as error:
        return None, [_problem("config", str(error))]


def _record_exit(proc: subprocess.Popen, path: Path) -> None:
    """Keep the child's exit code next to its log, so a later dashboard tells a stopped run from a failed one."""
    code = proc.wait()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"code": code}), encoding="utf-8")
    os.replace(tmp, path)


class Children:
    """The runs this dashboard started, by resolved output folder."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [r.resolve() for r in roots]
        self.procs: dict[Path, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def running(self, folder: Path) -> bool:
        """Whether a run this dashboard started into ``folder`` is still running."""
        proc = self.procs.get(folder.resolve())
        return proc is not None and proc.poll() is None

    def exit_code(self, folder: Path) -> int | None:
        """The exit code of the last run started into ``folder`` from a dashboard (this one, or an
        earlier one: ``.serve/exit.json``), or None (never started from one, or still running)."""
        proc = self.procs.get(folder.resolve())
        if proc is not None:
            return proc.poll()
        code = read_json(folder / SERVE_DIR / "exit.json").get("code")
        return code if isinstance(code, int) else None

    def start(self, config: dict[str, Any], resume: bool = False) -> Path:
        """Validate ``config`` and start it; raise :class:`Refusal` with every problem otherwise."""
        resolved, problems = validate(config)
        if problems:
            raise Refusal(problems)
        output = Path(resolved.output_dir).expanduser().resolve()
        if not any(output == r or r in output.parents for r in self.roots):
            raise Refusal([_problem("output_dir", f"{output} is outside the folders this dashboard serves",
                                    "choose an output_dir under " + ", ".join(map(str, self.roots)))])
        with self.lock:
            holder = lock_holder(output)
            if self.running(output) or pid_alive(holder.get("pid")):
                raise Refusal([_problem("output_dir", f"a run is already writing to {output}",
                                        "stop it first, or choose another output_dir")])
            if not resume and not resolved.overwrite_output_dir and not resolved.resume_from_checkpoint:
                from vtrain.output_folder import run_outputs

                if run_outputs(output):
                    raise Refusal([_problem("output_dir", f"{output} holds an earlier run",
                                            "resume it from its page, set overwrite_output_dir, or choose another "
                                            "output_dir")])
            serve = output / SERVE_DIR
            serve.mkdir(parents=True, exist_ok=True)
            (serve / "exit.json").unlink(missing_ok=True)
            config_path = serve / "config.json"
            if not resume:
                config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
            args = [sys.executable, "-m", "vtrain", "run", "--config", str(config_path)]
            if resume:
                args += ["--resume_from_checkpoint", "latest"]
            with open(serve / "log.txt", "ab") as log:
                log.write(f"\n$ {' '.join(args)}\n".encode())
                log.flush()
                self.procs[output] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
            threading.Thread(target=_record_exit, args=(self.procs[output], serve / "exit.json"), daemon=True).start()
        return output

    def resume(self, folder: Path) -> Path:
        """Start the run in ``folder`` again from its latest checkpoint (a run started from this dashboard)."""
        path = folder / SERVE_DIR / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise Refusal([_problem(str(path), "this run was not started from the dashboard, so its full config "
                                    "is not here (run_info.json has secrets redacted)",
                                    "resume it with vtrain run --config ... --resume_from_checkpoint latest")]) from None
        return self.start(config, resume=True)

    def stop(self, folder: Path) -> None:
        """Send SIGINT (Ctrl-C) to the run this dashboard started in ``folder``."""
        proc = self.procs.get(folder.resolve())
        if proc is None or proc.poll() is not None:
            raise Refusal([_problem(str(folder), "no run started from this dashboard is running here",
                                    "only runs started from this page can be stopped from it")])
        proc.send_signal(signal.SIGINT)
