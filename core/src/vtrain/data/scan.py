"""Scanning one backend's folder: which files become samples, with what geometry and caption,
and which are skipped (each with its path and reason)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtrain.data.cache import MetadataIndex, file_digest
from vtrain.data.geometry import Geometry, bucket_key, frames_for, measure, plan_geometry
from vtrain.data.media_io import MediaError, MediaInfo, probe, probe_audio
from vtrain.data.spec import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaBackend
from vtrain.family import FamilyTraits


@dataclass(frozen=True)
class ScannedItem:
    """One usable source file and how it is turned into a sample."""

    path: Path
    digest: str
    info: MediaInfo
    geometry: Geometry
    bucket: str
    caption: str


@dataclass
class ScanResult:
    """Usable items and skipped files of one backend."""

    backend: MediaBackend
    items: list[ScannedItem] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    deleted: list[tuple[Path, str]] = field(default_factory=list)


def list_files(backend: MediaBackend) -> list[Path]:
    """Media files of the backend's folder (recursively, sorted; hidden folders ignored)."""
    extensions = VIDEO_EXTENSIONS if backend.is_video else AUDIO_EXTENSIONS if backend.is_audio else IMAGE_EXTENSIONS
    found = []
    for root, dirs, files in os.walk(backend.instance_data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.lower().endswith(extensions) and not name.startswith("."):
                found.append(Path(root) / name)
    return sorted(found)


def read_caption(path: Path, backend: MediaBackend) -> tuple[str | None, str | None]:
    """(caption, None) or (None, reason) for ``path`` under the backend's caption strategy."""
    if backend.caption_strategy == "instanceprompt":
        return backend.instance_prompt or "", None
    if backend.caption_strategy == "filename":
        text = path.stem.replace("_", " ").replace("-", " ").strip()
        return (text, None) if text else (None, "the file name gives an empty caption")
    caption_file = path.with_suffix(".txt")
    if not caption_file.is_file():
        return None, f"missing caption: {caption_file.name} not found (caption_strategy textfile)"
    try:
        text = caption_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"caption file {caption_file.name} is unreadable: {exc}"
    if not text:
        return None, f"caption file {caption_file.name} is empty"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()), None


def scan_backend(backend: MediaBackend, traits: FamilyTraits, delete_problematic: bool = False,
                 save_metadata: bool = True, say: Callable[[str], Any] = print) -> ScanResult:
    """Probe every file of ``backend``; unreadable files are skipped (or deleted) with the reason."""
    result = ScanResult(backend)
    index = MetadataIndex(backend.cache_dir_vae)
    for path in list_files(backend):
        caption, reason = read_caption(path, backend)
        if caption is None:
            result.skipped.append((path, str(reason)))
            continue
        record = index.lookup(path)
        if record is None:
            record = _probe_record(path, backend.is_video, backend.is_audio)
            index.store(path, record)
        if "error" in record:
            if delete_problematic:
                path.unlink(missing_ok=True)
                result.deleted.append((path, record["error"]))
                say(f"delete_problematic_images: deleted {path} ({record['error']})")
            else:
                result.skipped.append((path, record["error"]))
            continue
        info = MediaInfo(**record["info"])
        if backend.is_audio:  # sound only: a fixed length from the start, one bucket per length
            if info.frames < backend.audio_seconds * info.fps:
                result.skipped.append((path, f"lasts {info.frames / info.fps:.2f}s, audio_seconds is "
                                             f"{backend.audio_seconds:g}"))
                continue
            geometry = Geometry(0, (0, 0), (0, 0, 0, 0), (0, 0))
            result.items.append(ScannedItem(path, record["digest"], info, geometry,
                                            f"audio{backend.audio_seconds:g}s", caption))
            continue
        reason = _size_problem(info, backend)
        if reason:
            result.skipped.append((path, reason))
            continue
        frames, reason = frames_for(info.frames, backend, traits.frame_factor, traits.frame_offset)
        if reason:
            result.skipped.append((path, reason))
            continue
        geometry = plan_geometry(info.width, info.height, frames, backend, traits.spatial_alignment, record["digest"])
        result.items.append(ScannedItem(path, record["digest"], info, geometry, bucket_key(geometry, backend), caption))
    if save_metadata:
        backend.cache_dir_vae.mkdir(parents=True, exist_ok=True)
        index.save()
    return result


def _probe_record(path: Path, is_video: bool, is_audio: bool = False) -> dict[str, Any]:
    try:
        info = probe_audio(path) if is_audio else probe(path, is_video)
    except (MediaError, OSError) as exc:
        return {"error": str(exc)}
    return {"digest": file_digest(path), "info": info.__dict__.copy()}


def _size_problem(info: MediaInfo, backend: MediaBackend) -> str | None:
    if backend.minimum_image_size is None:
        return None
    size = measure(info.width, info.height, backend.resolution_type)
    if size < backend.minimum_image_size:
        return (f"{info.width}x{info.height} is under minimum_image_size {backend.minimum_image_size:g} "
                f"({backend.resolution_type} measure {size:.0f})" if backend.resolution_type != "area" else
                f"{info.width}x{info.height} is under minimum_image_size {backend.minimum_image_size:g} megapixels")
    return None
