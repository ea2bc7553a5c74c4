"""The ``audio`` block of a dataset (SimpleTuner's keys and meanings) and ``s2v_datasets`` links.

On a **video** dataset the block tunes how each clip's own sound is read (``auto_split``, on by
default: every clip's audio stream is read; ``false``: the dataset trains video only), the rate and
channels it is extracted at, silence for clips without sound (``allow_zero_audio``) and a length
filter. On an **audio** dataset it sets the duration buckets (``duration_interval``), the length
filter (``min_duration_seconds`` / ``max_duration_seconds``) and which part of a long file is kept
(``truncation_mode``). ``s2v_datasets`` on a video dataset names audio datasets whose files (same
name, an audio extension) are the clips' sound instead of their own audio stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vtrain.data.spec_values import Checker, unknown_keys

TRUNCATION_MODES = ("beginning", "end", "random")
DEFAULT_DURATION_INTERVAL = 3.0  # SimpleTuner's default bucket interval of audio datasets (seconds)

_AUDIO_KEYS: dict[str, str] = {
    "auto_split": "bool", "sample_rate": "int", "channels": "int", "duration_interval": "float",
    "min_duration_seconds": "float", "max_duration_seconds": "float", "truncation_mode": "str",
    "audio_only": "bool", "allow_zero_audio": "bool", "bucket_strategy": "str",
}
_NO_EFFECT_EVERYWHERE = {
    "source_from_video": "set by SimpleTuner itself for the audio datasets it derives; vtrain reads a video "
                         "dataset's sound directly (auto_split)",
    "target_resolution": "audio-only samples feed no video tokens (the video stream is off), so no video size is needed",
}
_NO_EFFECT_ON_VIDEO = {
    **_NO_EFFECT_EVERYWHERE,
    "duration_interval": "a video dataset's sound is cut to exactly the frames each clip trains on (video.num_frames)",
    "truncation_mode": "a video dataset's sound is cut to exactly the frames each clip trains on, from the first",
}
_NO_EFFECT_ON_AUDIO = {
    **_NO_EFFECT_EVERYWHERE,
    "auto_split": "auto_split splits the sound off video files; an audio dataset's files are sound already",
    "allow_zero_audio": "every file of an audio dataset has sound (files without it are skipped)",
}

#: Every key of SimpleTuner's ``audio`` block (docs/differences-from-simpletuner.md lists each).
AUDIO_BLOCK_KEYS = tuple(sorted({*_AUDIO_KEYS, *_NO_EFFECT_EVERYWHERE}))


@dataclass(frozen=True)
class AudioSection:
    """The ``audio`` block of one dataset, defaults applied.

    ``sample_rate`` / ``channels`` None: the sound is extracted at the audio encoder's own rate and
    channels (the family's traits); set, it is extracted at these first, then brought to the encoder's.
    """

    auto_split: bool = True
    sample_rate: int | None = None
    channels: int | None = None
    duration_interval: float | None = None
    min_duration_seconds: float | None = None
    max_duration_seconds: float | None = None
    truncation_mode: str = "beginning"
    audio_only: bool = False
    allow_zero_audio: bool = False

    def extraction(self) -> tuple[int | None, int | None]:
        return self.sample_rate, self.channels

    def too_short_or_long(self, seconds: float) -> str | None:
        """Why a file of ``seconds`` is filtered out by the duration bounds, or None."""
        if self.min_duration_seconds is not None and seconds < self.min_duration_seconds:
            return f"lasts {seconds:.2f}s, shorter than audio.min_duration_seconds {self.min_duration_seconds:g}"
        if self.max_duration_seconds is not None and seconds > self.max_duration_seconds:
            return f"lasts {seconds:.2f}s, longer than audio.max_duration_seconds {self.max_duration_seconds:g}"
        return None


def parse_audio_section(check: Checker, section: Any, where: str, dataset_type: str) -> AudioSection:
    """Validate a dataset's ``audio`` block (every problem names ``<dataset>.audio.<key>``)."""
    where = f"{where}.audio"
    if not isinstance(section, dict):
        check.add(where, "expected a JSON object")
        return AudioSection()
    if dataset_type not in ("video", "audio"):
        check.add(where, f"a {dataset_type} dataset has no sound", 'remove the audio block')
        return AudioSection()
    no_effect = _NO_EFFECT_ON_VIDEO if dataset_type == "video" else _NO_EFFECT_ON_AUDIO
    misplaced = {"audio_only"} if dataset_type == "video" else set()
    if "audio_only" in section and misplaced:
        check.add(f"{where}.audio_only", "audio_only belongs on an audio dataset (sound files without video)",
                  'put the sound files in a dataset with "dataset_type": "audio" and "audio": {"audio_only": true}')
    known = {k: v for k, v in _AUDIO_KEYS.items() if k not in no_effect and k not in misplaced}
    unknown_keys(check, {k: v for k, v in section.items() if k not in misplaced}, known, where, no_effect=no_effect,
                 refused={})
    values = {k: check.value(section, k, kind, where) for k, kind in known.items() if k in section}
    strategy = values.get("bucket_strategy") or "duration"
    if strategy != "duration":
        check.add(f"{where}.bucket_strategy", f"unknown bucket_strategy {strategy!r}", 'use "duration" (the only one)')
    mode = values.get("truncation_mode") or "beginning"
    if mode not in TRUNCATION_MODES:
        check.add(f"{where}.truncation_mode", f"unknown truncation_mode {mode!r}", f"use one of {', '.join(TRUNCATION_MODES)}")
    interval = values.get("duration_interval")
    if interval is not None and interval <= 0:
        check.add(f"{where}.duration_interval", "must be positive (seconds; durations are rounded down to it)")
    low, high = values.get("min_duration_seconds"), values.get("max_duration_seconds")
    if high is not None and high <= 0:
        check.add(f"{where}.max_duration_seconds", "must be positive (longer files are skipped)")
    if low is not None and high is not None and high < low and check.valid(where, "min_duration_seconds",
                                                                             "max_duration_seconds"):
        check.add(f"{where}.max_duration_seconds", f"max_duration_seconds {high:g} is below min_duration_seconds {low:g}")
    return AudioSection(
        auto_split=values.get("auto_split") is not False,
        sample_rate=values.get("sample_rate"), channels=values.get("channels"), duration_interval=interval,
        min_duration_seconds=low, max_duration_seconds=high, truncation_mode=mode,
        audio_only=bool(values.get("audio_only", False)), allow_zero_audio=bool(values.get("allow_zero_audio", False)))
