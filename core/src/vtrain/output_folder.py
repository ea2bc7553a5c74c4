"""Guarding a run's output folder: one run at a time, never a fresh run over another run's files,
never an output folder inside a dataset.

The lock is an exclusive ``flock`` on ``output_dir/.vtrain.lock``, held for the whole run. The
kernel drops it when the process dies (even on SIGKILL), so a lock file left by a dead run is
detected and taken over; the file itself only names the holder for the messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vtrain.errors import ConfigError, Problem

LOCK_NAME = ".vtrain.lock"
RUN_INFO = "run_info.json"
_RUN_MARKS = (RUN_INFO, "metrics.jsonl")  # written by every run at the top of its folder


class OutputLock:
    """An exclusive lock on ``output_dir`` for one run; use as a context manager or acquire/release."""

    def __init__(self, output_dir: Path, say: Callable[[str], Any] = print) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self.say = say
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ConfigError` naming the run that holds it."""
        import fcntl

        self.output_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise ConfigError([Problem(
                f"output_dir: {self.output_dir}",
                f"another vtrain run is writing to this folder ({holder}); two runs in one folder would mix "
                "their checkpoints and outputs",
                "wait for that run to finish (or stop it), or give this run another output_dir")]) from None
        except OSError as exc:  # a filesystem without locks (some network shares): say so, never guess
            os.close(fd)
            raise ConfigError([Problem(f"output_dir: {self.output_dir}",
                                       f"cannot lock the output folder ({exc.strerror or exc})",
                                       "use an output_dir on a local disk")]) from None
        previous = _read_holder(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.say(f"note: took over the lock of an earlier run in {self.output_dir} that is no longer running "
                     f"({_describe(previous)})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: a later run reads no live holder from it)."""
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def run_outputs(output_dir: Path) -> list[Path]:
    """What an earlier run in ``output_dir`` produced: its checkpoints, logged metrics, validation
    media and saved model files. A run that stopped before training (only ``run_info.json``) leaves
    nothing to protect."""
    from vtrain.checkpoint import list_checkpoint_folders

    if not output_dir.is_dir():
        return []
    found = list_checkpoint_folders(output_dir)
    metrics = output_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append(metrics)
    validation = output_dir / "validation"
    if validation.is_dir() and any(validation.iterdir()):
        found.append(validation)
    listed = _read_json(output_dir / RUN_INFO).get("outputs", [])
    found += [output_dir / name for name in listed if isinstance(name, str) and (output_dir / name).exists()]
    return sorted(set(found))


def check_fresh_run(output_dir: Path, resuming: bool, overwrite: bool, say: Callable[[str], Any] = print) -> None:
    """Refuse a fresh run into a folder holding another run's outputs, unless it resumes or overwrites.

    With ``overwrite`` the earlier run's checkpoints, run info, metrics, validation media and
    saved model files are removed first (and listed), so nothing of it is mixed into this run.
    """
    earlier = run_outputs(output_dir)
    if not earlier or resuming:
        return
    names = ", ".join(p.name for p in earlier[:6]) + (", ..." if len(earlier) > 6 else "")
    if not overwrite:
        raise ConfigError([Problem(
            f"output_dir: {output_dir}",
            f"the folder holds an earlier run's outputs ({names}); a new run there would mix its files with them",
            "continue that run with --resume_from_checkpoint latest, start afresh with --overwrite_output_dir true "
            "(deletes that run's files), or choose another output_dir")])
    removed = _remove_earlier_run(output_dir)
    say(f"overwrite_output_dir: removed the earlier run's {', '.join(p.name for p in removed)} from {output_dir}")


def _remove_earlier_run(output_dir: Path) -> list[Path]:
    doomed = run_outputs(output_dir) + [output_dir / name for name in _RUN_MARKS]
    removed = []
    for path in sorted(set(doomed)):
        if not path.exists() or path.resolve().parent != output_dir.resolve():
            continue  # only entries directly inside output_dir, never anything above it
        if path.is_dir():
            aside = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, aside)  # never leave a half-deleted checkpoint that lists as complete
            shutil.rmtree(aside, ignore_errors=True)
        else:
            path.unlink()
        removed.append(path)
    return removed


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_run_output_folder(folder: Path) -> bool:
    """Whether ``folder`` is (or was) a vtrain run's output folder."""
    return (folder / LOCK_NAME).exists() or (folder / RUN_INFO).exists()


def output_inside_datasets(output_dir: Path, dataset_dirs: Iterable[tuple[str, Path]]) -> list[Problem]:
    """Problems for each dataset folder that ``output_dir`` is, or lies inside."""
    problems = []
    out = Path(output_dir).resolve()
    for ident, folder in dataset_dirs:
        data = Path(folder).resolve()
        if out == data or data in out.parents:
            problems.append(Problem(
                "output_dir", f"{output_dir} is inside the folder of dataset {ident!r} ({folder}): the run's "
                "validation media and checkpoints would be read as training data by the next run",
                "choose an output_dir outside every instance_data_dir"))
    return problems
