"""The output folder's disk: can the run write there, and how much room is left.

Used at validation (a read-only folder is refused before the model loads) and when a checkpoint
write fails for lack of space (one message with the space needed, not a library traceback).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new output_dir is created in)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_problem(folder: Path) -> str | None:
    """Why the run cannot write in ``folder`` (``None`` when it can).

    The check writes and removes a real file: permission bits say nothing for root, and a read-only
    mount or a full disk only shows when something is written.
    """
    existing = nearest_existing(Path(folder))
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        handle, name = tempfile.mkstemp(prefix=".vtrain-write-check-", dir=existing)
    except OSError as exc:
        return f"cannot create files in {existing}: {exc.strerror or exc}"
    try:
        os.write(handle, b"\0")
    except OSError as exc:
        return f"cannot write files in {existing}: {exc.strerror or exc}"
    finally:
        os.close(handle)
        os.unlink(name)
    return None


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error`` (an ``OSError`` or a library error wrapping one, e.g. safetensors') means a full disk."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return True
        text = str(current)
        if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(nearest_existing(folder)).free


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
