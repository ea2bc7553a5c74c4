"""Sound in the data layer: which part of an audio file is a sample, and the sound job of each video clip.

A video clip's sound is its own audio stream (``audio.auto_split``) or, with ``s2v_datasets``, the file of
the same name in a linked audio dataset; either is cut to exactly the frames the clip trains on and
cached under ``<cache_dir_vae>/audio`` with a key made of the clip's latents key and every setting that
changes the sound (source file, extraction rate and channels, encoder rate and channels, silence fill).
"""

from __future__ import annotations

import math
from pathlib import Path

from vtrain.data.audio_spec import DEFAULT_DURATION_INTERVAL
from vtrain.data.cache import CacheStore, cache_key, file_digest
from vtrain.data.caching import CacheJob
from vtrain.data.geometry import _stable_fraction
from vtrain.data.media_io import NoAudio, load_audio
from vtrain.data.spec import AUDIO_EXTENSIONS, MediaBackend
from vtrain.family import FamilyTraits


def audio_window(seconds: float, backend: MediaBackend, digest: str) -> tuple[tuple[float, float] | None, str | None]:
    """((start, length), None) of an audio dataset's file of ``seconds``, or (None, why it is skipped).

    The length is ``audio_seconds`` when set (vtrain's fixed length), else the duration rounded down to
    ``audio.duration_interval`` (SimpleTuner's duration buckets, 3 s by default); ``audio.truncation_mode``
    keeps the beginning, the end or a stable random part (the same on every run, so the cache stays valid).
    """
    reason = backend.audio.too_short_or_long(seconds)
    if reason:
        return None, reason
    if backend.audio_seconds is not None:
        if seconds + 1e-6 < backend.audio_seconds:
            return None, f"lasts {seconds:.2f}s, audio_seconds is {backend.audio_seconds:g}"
        length = backend.audio_seconds
    else:
        interval = backend.audio.duration_interval or DEFAULT_DURATION_INTERVAL
        length = math.floor(seconds / interval + 1e-9) * interval
        if length <= 0:
            return None, (f"lasts {seconds:.2f}s, shorter than audio.duration_interval {interval:g} "
                          "(durations are rounded down to it)")
    spare = max(0.0, seconds - length)
    mode = backend.audio.truncation_mode
    start = 0.0 if mode == "beginning" else spare if mode == "end" else spare * _stable_fraction(digest, "audio-start")
    return (round(start, 6), float(length)), None


def audio_dataset_job(backend: MediaBackend, path: Path, window: tuple[float, float], key: str,
                      traits: FamilyTraits) -> CacheJob:
    """An audio dataset's sample: ``window`` of ``path`` at the encoder's rate (encoded as ``audio``)."""
    start, length = window
    return CacheJob(key, lambda: load_audio(path, 1, 1 / length, traits.audio_sample_rate, traits.audio_channels,
                                            offset=start, extract=backend.audio.extraction()),
                    ("audio", length), str(path), (("source", str(path)), ("start", f"{start:g}"),
                                                   ("seconds", f"{length:g}")))


def audio_dataset_identity(backend: MediaBackend, window: tuple[float, float], traits: FamilyTraits) -> dict[str, object]:
    """What, beside the file, makes an audio dataset's cached sample."""
    return {"window": list(window), "rate": traits.audio_sample_rate, "channels": traits.audio_channels,
            "extract": list(backend.audio.extraction())}


def audio_store(backend: MediaBackend, compress: bool) -> CacheStore:
    """Where a video backend's encoded sound lives: beside its latents."""
    return CacheStore(backend.cache_dir_vae / "audio", compress)


def clip_fps(fps: float, step: int) -> float:
    """The rate a clip trains at when every ``step``-th frame is used."""
    return fps / step if fps > 0 else 0.0


def audio_samples(frames: int, fps: float, rate: int) -> int:
    """Samples of sound that go with ``frames`` frames at ``fps``."""
    return max(1, round(frames / fps * rate)) if fps > 0 else 0


def linked_sound(backend: MediaBackend, clip: Path) -> tuple[Path | None, tuple[int | None, int | None]]:
    """The clip's sound file in the linked audio datasets (same relative name, an audio extension) and the
    extraction settings of its dataset; (None, ...) when none has it."""
    relative = clip.relative_to(backend.instance_data_dir)
    for folder, section in backend.sound_sources:
        for extension in AUDIO_EXTENSIONS:
            for candidate in (folder / relative.with_suffix(extension), folder / relative.with_suffix(extension.upper())):
                if candidate.is_file():
                    return candidate, section.extraction()
    return None, (None, None)


def clip_sound_job(backend: MediaBackend, clip: Path, frames: int, fps: float, latent_key: str,
                   traits: FamilyTraits) -> CacheJob:
    """The sound of a video clip's frames used, encoded as ``audio`` (a failure means: the clip has no sound)."""
    rate, channels = traits.audio_sample_rate, traits.audio_channels
    zero_fill = backend.audio.allow_zero_audio
    if backend.sound_sources:
        source, extract = linked_sound(backend, clip)
        origin = f"file {file_digest(source)}" if source is not None else "missing"
    else:
        source, extract, origin = clip, backend.audio.extraction(), "own stream"
    wanted = audio_samples(frames, fps, rate)

    def load() -> object:
        import torch

        try:
            if source is None:
                raise NoAudio(f"no sound file named {clip.stem}.* in the s2v_datasets "
                              f"({', '.join(backend.s2v_datasets)})")
            return load_audio(source, frames, fps, rate, channels, extract=extract)
        except NoAudio:
            if zero_fill:  # audio.allow_zero_audio: silence instead of a video-only clip
                return torch.zeros(channels, wanted)
            raise

    key = cache_key({"kind": "audio", "latents": latent_key, "origin": origin, "extract": list(extract),
                     "rate": rate, "channels": channels, "zero_fill": zero_fill})
    meta = (("source", str(source or clip)), ("sample_rate", str(rate)), ("channels", str(channels)),
            ("extracted_at", f"{extract[0] or rate}Hz/{extract[1] or channels}ch"))
    return CacheJob(key, load, wanted, str(source or clip), meta)

