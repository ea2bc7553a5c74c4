"""Scanning one backend's folder: which files become samples, with what geometry and caption,
and which are skipped (each with its path and reason)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vtrain.data.cache import MetadataIndex, file_digest
from vtrain.data.geometry import Geometry, bucket_key, frames_for, measure, plan_geometry
from vtrain.data.media_io import MediaError, MediaInfo, announce_decoder, probe, probe_audio
from vtrain.data.sound import audio_window
from vtrain.data.spec import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaBackend
from vtrain.family import FamilyTraits
from vtrain.output_folder import is_run_output_folder


@dataclass(frozen=True)
class ScannedItem:
    """One usable source file and how it is turned into a sample."""

    path: Path
    digest: str
    info: MediaInfo
    geometry: Geometry
    bucket: str
    caption: str
    window: tuple[float, float] | None = None  # audio datasets: (start, seconds) of the file used

    @property
    def fps(self) -> float:
        """The rate the sample trains at (the clip's, or ``video.frame_rate`` when frames are skipped)."""
        return self.info.fps / self.geometry.step if self.info.fps > 0 else 0.0


@dataclass
class ScanResult:
    """Usable items and skipped files of one backend."""

    backend: MediaBackend
    items: list[ScannedItem] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    deleted: list[tuple[Path, str]] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)  # files left out by audio.min/max_duration_seconds

    def count_filter(self, reason: str) -> None:
        for key in ("min_duration_seconds", "max_duration_seconds"):
            if key in reason:
                self.filtered[key] = self.filtered.get(key, 0) + 1


def list_files(backend: MediaBackend, run_folders: list[Path] | None = None) -> list[Path]:
    """Media files of the backend's folder (recursively, sorted; hidden folders ignored).

    A folder that is a vtrain run's output folder (its validation media are not data) is never
    read; it is appended to ``run_folders``.
    """
    extensions = VIDEO_EXTENSIONS if backend.is_video else AUDIO_EXTENSIONS if backend.is_audio else IMAGE_EXTENSIONS
    found = []
    for root, dirs, files in os.walk(backend.instance_data_dir):
        if is_run_output_folder(Path(root)):
            if run_folders is not None:
                run_folders.append(Path(root))
            dirs[:] = []
            continue
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
        text = caption_file.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"caption file {caption_file.name} is unreadable: {exc}"
    if not text:
        return None, f"caption file {caption_file.name} is empty"
    from vtrain.options import MAX_TEXT_CHARS

    if len(text) > MAX_TEXT_CHARS:  # megabytes of text abort inside the tokenizer, minutes into caching
        return None, f"caption file {caption_file.name} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()), None


def scan_backend(backend: MediaBackend, traits: FamilyTraits, delete_problematic: bool = False,
                 save_metadata: bool = True, say: Callable[[str], Any] = print) -> ScanResult:
    """Probe every file of ``backend``; unusable files are skipped with the reason.

    With ``delete_problematic``, a file that was read and failed to *decode* is deleted; a file
    that could not be read (permissions, I/O errors) or is empty is only ever skipped.
    """
    result = ScanResult(backend)
    index = MetadataIndex(backend.cache_dir_vae)
    if backend.is_video:
        announce_decoder(say)
    run_folders: list[Path] = []
    for path in list_files(backend, run_folders):
        caption, reason = read_caption(path, backend)
        if caption is None:
            result.skipped.append((path, str(reason)))
            continue
        record = _lookup(index, path)
        if record is None:
            record = _probe_record(path, backend.is_video, backend.is_audio)
            if record.get("kind") != "io":  # a read error may be gone next time: never remembered
                index.store(path, record)
        if "error" in record:
            if delete_problematic and record.get("kind") == "decode":
                path.unlink(missing_ok=True)
                result.deleted.append((path, f"read, but cannot be decoded: {record['error']}"))
                say(f"delete_problematic_images: deleted {path} (read, but cannot be decoded: {record['error']})")
            elif delete_problematic:
                why = "it could not be read" if record.get("kind") == "io" else "it is empty (perhaps still being written)"
                result.skipped.append((path, f"{record['error']} (not deleted: {why}, which is no proof it is damaged)"))
            else:
                result.skipped.append((path, record["error"]))
            continue
        info = MediaInfo(**record["info"])
        if backend.is_audio:  # sound only: a window of the file (duration buckets), one bucket per length
            window, reason = audio_window(info.frames / info.fps, backend, record["digest"])
            if window is None:
                result.skipped.append((path, str(reason)))
                result.count_filter(str(reason))
                continue
            geometry = Geometry(0, (0, 0), (0, 0, 0, 0), (0, 0))
            result.items.append(ScannedItem(path, record["digest"], info, geometry, f"audio{window[1]:g}s", caption,
                                            window))
            continue
        reason = _size_problem(info, backend) or _duration_problem(info, backend)
        if reason:
            result.skipped.append((path, reason))
            result.count_filter(reason)
            continue
        step, reason = frame_step(info.fps, backend.video.frame_rate if backend.is_video else None)
        if reason:
            result.skipped.append((path, reason))
            continue
        info_used = info if step == 1 else MediaInfo(**{**info.__dict__, "frames": (info.frames - 1) // step + 1})
        frames, reason = frames_for(info_used.frames, backend, traits.frame_factor, traits.frame_offset)
        if reason:
            result.skipped.append((path, reason))
            continue
        geometry = plan_geometry(info.width, info.height, frames, backend, traits.spatial_alignment, record["digest"])
        geometry = replace(geometry, step=step) if step != 1 else geometry
        result.items.append(ScannedItem(path, record["digest"], info, geometry, bucket_key(geometry, backend), caption))
    for folder in run_folders:
        result.skipped.append((folder, "a vtrain run's output folder: its files are never read as data"))
    if save_metadata:
        backend.cache_dir_vae.mkdir(parents=True, exist_ok=True)
        index.save()
    return result


def _lookup(index: MetadataIndex, path: Path) -> dict[str, Any] | None:
    try:
        record = index.lookup(path)
    except OSError:
        return None  # probed below, which reports the read error
    if record is not None and "error" in record and "kind" not in record:
        return None  # a record of an older vtrain that did not tell read errors from decode errors
    return record


def _probe_record(path: Path, is_video: bool, is_audio: bool = False) -> dict[str, Any]:
    """The file's digest and probe, or ``{"error", "kind"}``: reading every byte first (the digest)
    tells a file that cannot be read (``io``) from one that was read and cannot be decoded."""
    try:
        digest = file_digest(path)
    except OSError as exc:
        return {"error": f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})", "kind": "io"}
    try:
        info = probe_audio(path) if is_audio else probe(path, is_video)
    except MediaError as exc:
        return {"error": str(exc), "kind": exc.kind}
    except OSError as exc:
        return {"error": f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})", "kind": "io"}
    return {"digest": digest, "info": info.__dict__.copy()}


def _size_problem(info: MediaInfo, backend: MediaBackend) -> str | None:
    if backend.minimum_image_size is None:
        return None
    size = measure(info.width, info.height, backend.resolution_type)
    if size < backend.minimum_image_size:
        return (f"{info.width}x{info.height} is under minimum_image_size {backend.minimum_image_size:g} "
                f"({backend.resolution_type} measure {size:.0f})" if backend.resolution_type != "area" else
                f"{info.width}x{info.height} is under minimum_image_size {backend.minimum_image_size:g} megapixels")
    return None


def _duration_problem(info: MediaInfo, backend: MediaBackend) -> str | None:
    """``audio.min_duration_seconds`` / ``max_duration_seconds`` of a video dataset bound the clips' length."""
    if not backend.is_video or info.fps <= 0:
        return None
    return backend.audio.too_short_or_long(info.frames / info.fps)


def frame_step(fps: float, frame_rate: float | None) -> tuple[int, str | None]:
    """(every how many source frames one is used, None) for ``video.frame_rate``, or (0, why the clip is skipped)."""
    if frame_rate is None or fps <= 0:
        return 1, None
    ratio = fps / frame_rate
    step = round(ratio)
    if step < 1 or abs(ratio - step) > 0.01 * ratio:
        return 0, (f"{fps:g} fps cannot be brought to video.frame_rate {frame_rate:g} by keeping every n-th frame "
                   f"(the clip's rate must be a whole multiple of it); re-encode the clip or change frame_rate")
    return step, None
