"""Content-keyed on-disk caches of encoded samples (latents, text embeddings) as safetensors.

A cache entry's name is a hash of everything that changes its content (the source file's bytes,
the frames and crop used, the model and dtype, the code version), so a stale entry is never
read and an unchanged one is never rebuilt. Each entry is written to a temporary file and
renamed into place, so a killed build leaves only whole entries and resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.atomic import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    import torch

CACHE_FORMAT_VERSION = 1  # bump when the encode pipeline of the data layer changes its output
_SUFFIX = ".safetensors"
_COMPRESSED_SUFFIX = ".safetensors.zz"
_FAILED_SUFFIX = ".failed.json"


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hex key of ``parts`` (any JSON-serialisable mapping)."""
    text = json.dumps({"v": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """blake2b of the file's bytes (streamed)."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class CacheStore:
    """A folder of cache entries named by key, sharded by the key's first two characters."""

    def __init__(self, folder: Path, compress: bool = False) -> None:
        self.folder = Path(folder)
        self.compress = compress

    def _base(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def path_of(self, key: str) -> Path | None:
        """The entry's file, compressed or not, or None when it is not cached."""
        base = self._base(key)
        for suffix in (_SUFFIX, _COMPRESSED_SUFFIX):
            candidate = base.with_name(base.name + suffix)
            if candidate.exists():
                return candidate
        return None

    def has(self, key: str) -> bool:
        return self.path_of(key) is not None

    def write(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> Path:
        """Write one entry atomically (temporary file + rename)."""
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta or {})
        base = self._base(key)
        if self.compress:
            path = base.with_name(base.name + _COMPRESSED_SUFFIX)
            atomic_write_bytes(path, zlib.compress(data, 6))
        else:
            path = base.with_name(base.name + _SUFFIX)
            atomic_write_bytes(path, data)
        self.clear_failure(key)
        return path

    def read(self, key: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        path = self.path_of(key)
        if path is None:
            raise KeyError(f"cache entry {key} is missing from {self.folder}")
        data = path.read_bytes()
        if path.name.endswith(_COMPRESSED_SUFFIX):
            data = zlib.decompress(data)
        return load(data)

    # failure records let every rank learn why an entry built by another rank is missing
    def record_failure(self, key: str, reason: str) -> None:
        base = self._base(key)
        atomic_write_json(base.with_name(base.name + _FAILED_SUFFIX), {"reason": reason})

    def failure(self, key: str) -> str | None:
        base = self._base(key)
        path = base.with_name(base.name + _FAILED_SUFFIX)
        try:
            return str(json.loads(path.read_text())["reason"])
        except (OSError, ValueError, KeyError):
            return None

    def clear_failure(self, key: str) -> None:
        base = self._base(key)
        path = base.with_name(base.name + _FAILED_SUFFIX)
        if path.exists():
            os.unlink(path)


class MetadataIndex:
    """Per-dataset memo of file content hashes and probe results, keyed by path, size and mtime.

    Saves re-hashing and re-probing every file at each start (SimpleTuner's ``discovery`` metadata).
    """

    NAME = "vtrain_metadata.json"

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.NAME
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == CACHE_FORMAT_VERSION:
                    self.entries = data.get("files", {})
            except (OSError, ValueError):
                self.entries = {}

    def lookup(self, path: Path) -> dict[str, Any] | None:
        stat = path.stat()
        entry = self.entries.get(str(path))
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return dict(entry)
        return None

    def store(self, path: Path, record: dict[str, Any]) -> None:
        stat = path.stat()
        self.entries[str(path)] = {**record, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            atomic_write_json(self.path, {"version": CACHE_FORMAT_VERSION, "files": self.entries})
            self.dirty = False
