"""Reading runs from their output folders, without ever writing to them or blocking the training.

A run folder is one holding ``run_info.json`` or ``metrics.jsonl``. Everything here is read-only:
``metrics.jsonl`` is read up to its last complete line (the training appends, and a line being
written is skipped until it is whole), the lock file ``.vtrain.lock`` is only read, never locked.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_MARKS = ("run_info.json", "metrics.jsonl")
SERVE_DIR = ".serve"  # what the dashboard keeps in a run it started: the config and the log
MEDIA = {".mp4": "video", ".webm": "video", ".gif": "image", ".png": "image", ".jpg": "image",
         ".wav": "audio", ".mp3": "audio", ".flac": "audio", ".ogg": "audio", ".npy": "latents"}
_STEP_DIR = re.compile(r"^step-(\d+)$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class RunRef:
    """A run folder and its id in the dashboard (the folder relative to the served root, prefixed by the root's index)."""

    id: str
    path: Path


def find_runs(roots: list[Path], depth: int = 3) -> dict[str, RunRef]:
    """Every run folder under ``roots`` (the roots themselves included), at most ``depth`` levels down."""
    found: dict[str, RunRef] = {}
    for index, root in enumerate(roots):
        for folder in _walk(root, depth):
            rel = folder.relative_to(root).as_posix()
            run_id = f"{index}/{rel}" if rel != "." else f"{index}/"
            found[run_id] = RunRef(run_id, folder)
    return found


def _walk(folder: Path, depth: int) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    names = {e.name for e in entries}
    marked = any(mark in names for mark in RUN_MARKS) or os.path.isfile(os.path.join(folder, SERVE_DIR, "config.json"))
    out = [folder] if marked else []
    if depth > 0:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") \
                    and not _CHECKPOINT.match(entry.name) and entry.name not in ("validation", "tensorboard"):
                out += _walk(Path(entry.path), depth - 1)
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or ``{}`` when it is missing, being replaced or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete metric lines of ``metrics.jsonl`` from byte ``offset``, and the offset after them.

    A torn last line (the writer is mid-line) is left for the next call; a line that is complete
    but not JSON is skipped; NaN and infinities become None. A file shorter than ``offset`` was
    rewritten (a resume drops the steps it repeats): it is read again from the start.
    """
    lines, offset = _complete_lines(path, offset)
    rows = []
    for line in lines:
        try:
            row = json.loads(line, parse_constant=lambda _name: None)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows, offset


def metrics_json(path: Path, offset: int = 0) -> tuple[bytes, int]:
    """:func:`read_metrics` as a JSON array, fast for long runs: when every line is a clean metric
    object (the usual case) the lines are checked with one parse and sent as they are."""
    lines, end = _complete_lines(path, offset)
    body = b"[" + b",".join(lines) + b"]"
    if b"NaN" not in body and b"Infinity" not in body:
        try:
            rows = json.loads(body)
        except ValueError:
            rows = None
        if rows is not None and all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in rows):
            return body, end
    rows, end = read_metrics(path, offset)
    return json.dumps(rows).encode(), end


def _complete_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if offset > size:
                offset = 0
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return [line for line in data[:end].splitlines() if line.strip()], offset + end


def last_metric(path: Path, tail: int = 8192) -> dict[str, Any]:
    """The last complete metric line, reading only the end of the file (fast for long runs)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - tail))
            data = handle.read()
    except OSError:
        return {}
    for line in reversed(data[: data.rfind(b"\n") + 1].splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            return row
    return {}


def lock_holder(folder: Path) -> dict[str, Any]:
    """Who holds the run's lock: the lock file names the pid while a run holds it (emptied on a clean end)."""
    return read_json(folder / ".vtrain.lock")


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(folder: Path, child_code: int | None = None, child_running: bool = False) -> str:
    """running / finished / failed / killed.

    From the files: a live lock holder on this host is running; ``run_info.json`` gains ``outputs``
    only when training ends; a lock file still naming a dead process means the run was killed
    (a clean end or an error empties it); ``stopped`` in ``run_info.json`` marks a clean stop on
    a signal, even for a run started in a terminal. ``child_code`` is the exit code of a run this dashboard
    started, which tells an interrupted run (Ctrl-C, SIGINT) from a failed one.
    """
    holder = lock_holder(folder)
    if child_running or (holder.get("host") == socket.gethostname() and pid_alive(holder.get("pid"))):
        return "running"
    info = read_json(folder / "run_info.json")
    if "outputs" in info:
        return "finished"
    if info.get("stopped"):  # stopped cleanly by Ctrl-C or SIGTERM, wherever it was started
        return "killed"
    if child_code is not None:
        return "finished" if child_code == 0 else "killed" if child_code in (130, 143, -2, -9, -15) else "failed"
    return "killed" if holder.get("pid") else "failed"


def checkpoints(folder: Path) -> list[dict[str, Any]]:
    """The run's complete ``checkpoint-N`` folders, oldest first."""
    found = []
    for entry in _entries(folder):
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.append({"step": int(match.group(1)), "name": entry.name,
                          "time": _iso(entry.stat(follow_symlinks=False).st_mtime)})
    return sorted(found, key=lambda c: c["step"])


def validation_media(folder: Path) -> list[dict[str, Any]]:
    """Validation files as ``{step, name, kind, path}``: ``validation/step-N/<name>.<ext>`` (previews excluded)."""
    found = []
    for step_dir in _entries(folder / "validation"):
        match = _STEP_DIR.match(step_dir.name)
        if not match or not step_dir.is_dir(follow_symlinks=False):
            continue
        for entry in _entries(Path(step_dir.path)):
            suffix = Path(entry.name).suffix.lower()
            if suffix in MEDIA and entry.is_file(follow_symlinks=False):
                found.append({"step": int(match.group(1)), "name": Path(entry.name).stem, "kind": MEDIA[suffix],
                              "path": f"validation/{step_dir.name}/{entry.name}"})
    return sorted(found, key=lambda m: (m["step"], m["name"]))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def summarize(ref: RunRef, status: str) -> dict[str, Any]:
    """One row of the runs list."""
    info = read_json(ref.path / "run_info.json")
    config = info.get("config") or {}
    last = last_metric(ref.path / "metrics.jsonl")
    started = _mtime(ref.path / "run_info.json") or _mtime(ref.path / "metrics.jsonl")
    return {
        "id": ref.id, "name": ref.path.name, "path": str(ref.path), "family": config.get("model_family"),
        "status": status, "step": last.get("step", 0), "total": config.get("max_train_steps"),
        "loss": last.get("loss"), "samples_per_second": last.get("samples_per_second"),
        "started": _iso(started), "ended": None if status == "running" else _iso(_mtime(ref.path / "metrics.jsonl")),
    }


def log_tail(folder: Path, lines: int = 200, head: bool = False) -> list[str]:
    """The last (or with ``head`` the first) lines of the log of a run the dashboard started,
    progress-bar redraws folded to their last state."""
    path = folder / SERVE_DIR / "log.txt"
    try:
        with open(path, "rb") as handle:
            if not head:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - 65536))
            text = handle.read(65536).decode("utf-8", "replace")
    except OSError:
        return []
    out = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return [line for line in out if line.strip()][-lines:]


def startup_summary(folder: Path) -> list[str]:
    """The start-up summary block (``vtrain run`` ...) from the run's log, if the dashboard started it."""
    lines = log_tail(folder, 100000, head=True)
    for start, line in enumerate(lines):
        if line.strip() == "vtrain run":
            block = [line]
            for follow in lines[start + 1:]:
                if not follow.startswith(" "):
                    break
                block.append(follow)
            return block
    return []
