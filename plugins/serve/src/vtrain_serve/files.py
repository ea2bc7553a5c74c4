"""Serving a file from a run's own folder, and nothing else.

A request names a run (by its id) and a path relative to that run's folder. Absolute paths, ``..``
parts, and anything that resolves (through symlinks) outside the run's folder are refused; only
regular files of the known media/text types are served.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".wav": "audio/wav", ".mp3": "audio/mpeg",
         ".flac": "audio/flac", ".ogg": "audio/ogg", ".json": "application/json",
         ".jsonl": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Refused(Exception):
    """A request for a file the dashboard will not serve; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def safe_path(run_dir: Path, relative: str) -> Path:
    """The file ``relative`` inside ``run_dir``, or :class:`Refused`."""
    if not relative or "\\" in relative or "\0" in relative:
        raise Refused(400, "a path relative to the run folder is required")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith("~") or any(part in ("..", "") for part in relative.split("/")):
        raise Refused(403, "only paths inside the run folder are served")
    root = run_dir.resolve()
    target = (root / pure).resolve()
    if root != target and root not in target.parents:
        raise Refused(403, "the path leads out of the run folder (a symlink?)")
    if target.suffix.lower() not in TYPES:
        raise Refused(403, f"files of type {target.suffix or '(none)'} are not served")
    if not target.is_file():
        raise Refused(404, "no such file in the run folder")
    return target


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``Range: bytes=a-b`` header, or None for the whole file."""
    match = _RANGE.match(header or "")
    if not match or size == 0:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start > end or start >= size:
        raise Refused(416, "range not satisfiable")
    return start, end


def read_chunks(path: Path, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of ``path``, a megabyte at a time."""
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start + 1
        while left > 0:
            data = handle.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data


def content_type(path: Path) -> str:
    """The Content-Type for a served file."""
    return TYPES.get(path.suffix.lower(), "application/octet-stream")


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes."""
    return os.stat(path).st_size
