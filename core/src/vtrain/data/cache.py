"""Content-keyed on-disk caches of encoded samples (latents, text embeddings) as safetensors.

A cache entry's name is a hash of everything that changes its content (the source file's bytes,
the frames and crop used, the model and dtype, the code version), so a stale entry is never
read and an unchanged one is never rebuilt. Each entry is written to a temporary file and
renamed into place, so a killed build leaves only whole entries and resumes where it stopped.

Every entry carries a checksum of its tensor bytes in its safetensors metadata. An entry is
verified when it is read: a damaged one (truncated, overwritten with zeros, altered values) is
rebuilt at start-up with a note naming its file (:meth:`CacheStore.verify`), and one found
damaged during training stops the run with that file's name instead of being trained on.
Encoder outputs holding NaN or infinite values are never written (:func:`non_finite`).
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

CACHE_FORMAT_VERSION = 2  # bump when the encode pipeline or the entry format changes (2: checksummed entries)
_SUFFIX = ".safetensors"
_COMPRESSED_SUFFIX = ".safetensors.zz"
_FAILED_SUFFIX = ".failed.json"
_CHECKSUM = "vtrain_crc32"  # metadata key: CRC-32 of the bytes after the safetensors header


class CacheEntryError(Exception):
    """A cache entry is damaged; the message names its file and what is wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _body_checksum(data: bytes) -> str:
    header = int.from_bytes(data[:8], "little")
    return f"{zlib.crc32(memoryview(data)[8 + header :]):08x}"


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinite values.

    ``amax(|t|)`` is NaN or inf exactly when some element is, and is ~15x faster than ``isfinite().all()``.
    """
    import torch

    return [name for name, t in tensors.items()
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.detach().abs().amax()))]


def _header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes, shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if not 2 <= size <= len(data) - 8:
        raise ValueError("the header size is impossible (truncated or overwritten)")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header


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

        plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        data = save(plain, metadata=meta or {})
        # the tensor bytes do not depend on the metadata: the second serialisation only adds the checksum
        data = save(plain, metadata={**(meta or {}), _CHECKSUM: _body_checksum(data)})
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
        """The entry's tensors, verified; raises :class:`CacheEntryError` naming a damaged file."""
        path = self.path_of(key)
        if path is None:
            raise KeyError(f"cache entry {key} is missing from {self.folder}")
        return self._load_verified(path)

    def verify(self, key: str) -> str | None:
        """``None`` when the entry is intact (or absent), else the reason it is damaged."""
        path = self.path_of(key)
        if path is None:
            return None
        try:
            self._load_verified(path)
        except CacheEntryError as error:
            return error.reason
        return None

    def discard(self, key: str) -> None:
        """Remove an entry (a damaged one, before it is rebuilt)."""
        path = self.path_of(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def _load_verified(self, path: Path) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CacheEntryError(path, f"cannot be read ({exc.strerror or exc})") from None
        try:
            if path.name.endswith(_COMPRESSED_SUFFIX):
                data = zlib.decompress(data)
            header = _header(data)
            tensors = load(data)
        except Exception as exc:  # zlib.error, ValueError, SafetensorError
            raise CacheEntryError(path, f"not a readable cache entry (truncated or overwritten: {exc})") from None
        expected = (header.get("__metadata__") or {}).get(_CHECKSUM)
        if expected is None:
            raise CacheEntryError(path, "the entry has no checksum")
        if _body_checksum(data) != expected:
            raise CacheEntryError(path, "its contents do not match its checksum (damaged on disk)")
        return tensors  # values are checked for NaN/inf before writing; the checksum proves they are unchanged

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
