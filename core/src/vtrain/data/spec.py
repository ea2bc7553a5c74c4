"""Reading and checking ``data_backend_config`` (SimpleTuner's ``multidatabackend.json``).

Every backend is validated before anything is scanned; all problems are collected and each names
the dataset id and the key, so the user fixes the whole file in one go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vtrain.builtin_options import MAX_SIDE_PX
from vtrain.data.audio_spec import AudioSection, parse_audio_section
from vtrain.data.spec_values import MAX_REPEATS, SIMPLETUNER_DATASET_NO_EFFECT, SIMPLETUNER_DATASET_REFUSED
from vtrain.data.spec_values import Checker as _Checker
from vtrain.data.spec_values import unknown_keys as _unknown_keys
from vtrain.errors import ConfigError, Problem

__all__ = ["MAX_REPEATS", "SIMPLETUNER_DATASET_NO_EFFECT", "SIMPLETUNER_DATASET_REFUSED", "DataPlan", "MediaBackend",
           "TextEmbedBackend", "VideoSection", "AudioSection", "parse_backends", "load_backend_list", "backend_summary"]

DATASET_TYPES = ("video", "image", "audio", "text_embeds")
RESOLUTION_TYPES = ("pixel", "pixel_area", "area")
CROP_STYLES = ("center", "centre", "random", "corner")
CROP_ASPECTS = ("square", "preserve", "closest", "random")
CAPTION_STRATEGIES = ("textfile", "filename", "instanceprompt")
BUCKET_STRATEGIES = ("aspect_ratio", "resolution_frames")
METADATA_BACKENDS = ("discovery",)

# key -> (kind, applies to) ; kinds: str, int, float, bool, path, list, dict
_COMMON_KEYS: dict[str, str] = {
    "id": "str", "type": "str", "dataset_type": "str", "disabled": "bool", "default": "bool",
    "write_batch_size": "int",
}
_MEDIA_KEYS: dict[str, str] = {
    "instance_data_dir": "path", "cache_dir_vae": "path", "repeats": "int", "probability": "float",
    "resolution": "float", "resolution_type": "str", "minimum_image_size": "float",
    "maximum_image_size": "float", "target_downsample_size": "float", "crop": "bool", "crop_style": "str",
    "crop_aspect": "str", "crop_aspect_buckets": "list", "aspect_bucket_rounding": "int",
    "disable_bucket_pruning": "bool", "caption_strategy": "str", "instance_prompt": "str",
    "metadata_backend": "str", "caption_dropout_probability": "float", "text_embeds": "str",
    "video": "dict", "vae_batch_size": "int", "conditioning_data_dir": "path", "conditioning_downscale": "int",
    "audio_seconds": "float", "audio": "dict", "s2v_datasets": "ids",
}
_TEXT_KEYS: dict[str, str] = {"cache_dir": "path"}
_VIDEO_KEYS: dict[str, str] = {
    "num_frames": "int", "min_frames": "int", "max_frames": "int", "is_i2v": "bool",
    "bucket_strategy": "str", "frame_interval": "int", "frame_rate": "float",
}
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")


@dataclass(frozen=True)
class VideoSection:
    """The ``video`` section of a video backend."""

    num_frames: int = 125
    min_frames: int | None = None
    max_frames: int | None = None
    is_i2v: bool | None = None  # None: the family's traits.i2v_default
    bucket_strategy: str = "aspect_ratio"
    frame_interval: int | None = None
    frame_rate: float | None = None  # None: each clip's own rate; set: frames are taken at this rate


@dataclass(frozen=True)
class MediaBackend:
    """One ``video`` or ``image`` dataset, with every global default already applied."""

    id: str
    dataset_type: str
    instance_data_dir: Path
    cache_dir_vae: Path
    resolution: float
    resolution_type: str
    minimum_image_size: float | None
    maximum_image_size: float | None
    target_downsample_size: float | None
    crop: bool
    crop_style: str
    crop_aspect: str
    crop_aspect_buckets: tuple[float, ...]
    aspect_bucket_rounding: int
    disable_bucket_pruning: bool
    caption_strategy: str
    instance_prompt: str | None
    caption_dropout_probability: float
    repeats: int
    probability: float
    write_batch_size: int
    vae_batch_size: int
    text_embeds: str | None
    video: VideoSection = field(default_factory=VideoSection)
    conditioning_data_dir: Path | None = None  # paired reference clips (same relative names), e.g. for IC-LoRA
    conditioning_downscale: int = 1  # references are read at the sample's size divided by this
    audio_seconds: float | None = None  # audio datasets: a fixed length read from each file (vtrain's key)
    audio: AudioSection = field(default_factory=AudioSection)
    s2v_datasets: tuple[str, ...] = ()  # audio datasets whose files are this video dataset's sound
    sound_sources: tuple[tuple[Path, AudioSection], ...] = ()  # their folders and audio blocks (resolved)

    @property
    def is_video(self) -> bool:
        return self.dataset_type == "video"

    @property
    def is_audio(self) -> bool:
        return self.dataset_type == "audio"

    @property
    def takes_sound(self) -> bool:
        """A video dataset whose clips get sound: their own stream (``audio.auto_split``) or linked files."""
        return self.is_video and (self.audio.auto_split or bool(self.sound_sources))


@dataclass(frozen=True)
class TextEmbedBackend:
    """A ``text_embeds`` backend: where caption embeddings are cached."""

    id: str
    cache_dir: Path
    default: bool
    write_batch_size: int


@dataclass(frozen=True)
class DataPlan:
    """Every enabled backend of one run."""

    media: list[MediaBackend]
    text: dict[str, TextEmbedBackend]
    default_text: str

    def text_backend_for(self, media: MediaBackend) -> TextEmbedBackend:
        return self.text[media.text_embeds or self.default_text]


def load_backend_list(value: Any) -> tuple[list[Any], str]:
    """``data_backend_config`` as a list (from an inline list or a JSON file) and where it came from."""
    from vtrain.config import read_json_file

    if isinstance(value, list):
        return value, "data_backend_config"
    if isinstance(value, (str, Path)):
        data = read_json_file(value, what="data_backend_config file")
        if not isinstance(data, list):
            raise ConfigError([Problem(str(value), f"expected a JSON list of datasets, got {type(data).__name__}",
                                       "write the file as [ {\"id\": ...}, ... ]")])
        return data, str(value)
    raise ConfigError([Problem("data_backend_config", f"expected a JSON list or a path to a JSON file, got {value!r}")])


def parse_backends(value: Any, config: Any, base_dir: Path | None = None) -> DataPlan:
    """Validate every backend of ``data_backend_config``; raise one :class:`ConfigError` listing all problems.

    ``config`` supplies the global defaults (``resolution``, ``caption_dropout_probability`` ...).
    Relative paths are taken from the current directory (as SimpleTuner does).
    """
    entries, source = load_backend_list(value)
    check = _Checker(source)
    media: list[MediaBackend] = []
    text: dict[str, TextEmbedBackend] = {}
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            check.add(f"entry {position}", f"expected a JSON object, got {type(entry).__name__}")
            continue
        ident = entry.get("id")
        where = f"dataset {ident!r}" if isinstance(ident, str) and ident else f"entry {position}"
        if not isinstance(ident, str) or not ident:
            check.add(f"{where}.id", "every dataset needs a non-empty string id", 'add "id": "my-videos"')
        elif ident in seen:
            check.add(f"{where}.id", "the id is used twice", "give every dataset its own id")
        else:
            seen.add(ident)
        dataset_type = entry.get("dataset_type", "image")
        if dataset_type not in DATASET_TYPES:
            check.add(f"{where}.dataset_type", f"unknown dataset_type {dataset_type!r}",
                      f"use one of {', '.join(DATASET_TYPES)}")
            continue
        if entry.get("type", "local") != "local":
            check.add(f"{where}.type", f"backend type {entry.get('type')!r} is not supported", 'use "type": "local"')
        known = {**_COMMON_KEYS, **(_TEXT_KEYS if dataset_type == "text_embeds" else _MEDIA_KEYS)}
        _unknown_keys(check, entry, known, where)
        values = {k: check.value(entry, k, kind, where) for k, kind in known.items() if k in entry}
        family = config["model_family"] if config is not None and "model_family" in config else None
        for key, kind in known.items():  # SimpleTuner expands {model_family} in paths
            if kind == "path" and isinstance(values.get(key), str) and family:
                values[key] = values[key].replace("{model_family}", str(family))
        if values.get("disabled"):
            continue
        write_batch_size = values.get("write_batch_size") or 64
        if write_batch_size < 1:
            check.add(f"{where}.write_batch_size", "must be at least 1")
        if dataset_type == "text_embeds":
            if not values.get("cache_dir"):
                check.add(f"{where}.cache_dir", "a text_embeds dataset needs cache_dir",
                          'add "cache_dir": "cache/text/<model>"')
                continue
            text[str(ident)] = TextEmbedBackend(str(ident), Path(values["cache_dir"]), bool(values.get("default")),
                                                int(write_batch_size))
            continue
        backend = _media_backend(check, values, entry, where, str(ident), dataset_type, config, int(write_batch_size))
        if backend is not None:
            media.append(backend)
    media = _link_sound(check, media)
    if not media and not check.problems:
        check.add("datasets", "no enabled video or image dataset", 'add a dataset with "dataset_type": "video" or "image"')
    default_text = _default_text(check, text)
    for backend in media:
        if backend.text_embeds and backend.text_embeds not in text:
            check.add(f"dataset {backend.id!r}.text_embeds", f"no enabled text_embeds dataset is called {backend.text_embeds!r}",
                      f"use one of: {', '.join(text) or '(none defined)'}")
    if check.problems:
        raise ConfigError(check.problems)
    return DataPlan(media=media, text=text, default_text=default_text or "")


def _link_sound(check: _Checker, media: list[MediaBackend]) -> list[MediaBackend]:
    """Resolve ``s2v_datasets``: each video dataset gets its linked audio datasets' folders; a linked audio
    dataset is a sound source, not trained on its own (``audio.audio_only`` on it contradicts the link)."""
    audio = {b.id: b for b in media if b.is_audio}
    linked: set[str] = set()
    out: list[MediaBackend] = []
    for backend in media:
        sources = []
        for ident in backend.s2v_datasets:
            if ident not in audio:
                check.add(f"dataset {backend.id!r}.s2v_datasets", f"no enabled audio dataset is called {ident!r}",
                          f"use one of: {', '.join(audio) or '(none defined: add a dataset with dataset_type audio)'}")
            elif audio[ident].audio.audio_only:
                check.add(f"dataset {ident!r}.audio.audio_only", f"the dataset is linked by {backend.id!r}.s2v_datasets "
                          "as its clips' sound, and audio_only trains it alone", "remove one of the two")
            else:
                linked.add(ident)
                sources.append((audio[ident].instance_data_dir, audio[ident].audio))
        out.append(replace(backend, sound_sources=tuple(sources)) if sources else backend)
    return [b for b in out if b.id not in linked]


def _default_text(check: _Checker, text: dict[str, TextEmbedBackend]) -> str | None:
    if not text:
        check.add("datasets", "no enabled text_embeds dataset: caption embeddings need a cache folder",
                  'add {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, '
                  '"cache_dir": "cache/text"}')
        return None
    defaults = [t.id for t in text.values() if t.default]
    if len(defaults) > 1:
        check.add("datasets", f"several text_embeds datasets are marked default: {', '.join(defaults)}",
                  'keep "default": true on exactly one')
    if defaults:
        return defaults[0]
    if len(text) == 1:
        return next(iter(text))
    check.add("datasets", "several text_embeds datasets and none is marked default", 'set "default": true on one')
    return None


def _first_set(*values: Any) -> Any:
    """The first value that is not None (0 is a value: it is checked, never replaced by a default)."""
    return next((value for value in values if value is not None), None)


def _global(config: Any, key: str, fallback: Any) -> Any:
    if config is not None and key in config and config[key] is not None:
        return config[key]
    return fallback


def _media_backend(check: _Checker, values: dict[str, Any], entry: dict[str, Any], where: str, ident: str,
                   dataset_type: str, config: Any, write_batch_size: int) -> MediaBackend | None:
    before = len(check.problems)
    data_dir = values.get("instance_data_dir")
    if not data_dir:
        check.add(f"{where}.instance_data_dir", "missing: the folder of the dataset's files",
                  '"instance_data_dir": "datasets/my-videos"')
    elif not Path(data_dir).is_dir():
        check.add(f"{where}.instance_data_dir", f"folder not found: {data_dir}",
                  "check the path (relative paths start at the current directory)")
    cache_dir = values.get("cache_dir_vae")
    if not cache_dir:
        check.add(f"{where}.cache_dir_vae", "missing: where the encoded latents are cached",
                  f'"cache_dir_vae": "cache/vae/{ident}"')
    resolution_type = values.get("resolution_type") or _global(config, "resolution_type", None) or "pixel_area"
    if resolution_type not in RESOLUTION_TYPES:
        check.add(f"{where}.resolution_type", f"unknown resolution_type {resolution_type!r}",
                  f"use one of {', '.join(RESOLUTION_TYPES)}")
    default_resolution = 1.0 if resolution_type == "area" else 512.0
    resolution = _first_set(values.get("resolution"), _global(config, "resolution", None), default_resolution)
    if resolution is not None and resolution <= 0:
        check.add(f"{where}.resolution", "must be positive")
    elif resolution is not None and resolution_type in RESOLUTION_TYPES:
        limit = MAX_SIDE_PX**2 / 1e6 if resolution_type == "area" else MAX_SIDE_PX
        if resolution > limit:
            unit = "megapixels" if resolution_type == "area" else "pixels"
            check.add(f"{where}.resolution", f"{resolution:g} {unit} is beyond any machine's memory; the limit for "
                      f"resolution_type {resolution_type} is {limit:g}", "check for a typo (an extra digit)")
    crop_style = values.get("crop_style") or "center"
    if crop_style == "face":
        check.add(f"{where}.crop_style", "crop_style face needs a face detector, which vtrain does not ship",
                  "use center, random or corner")
    elif crop_style not in CROP_STYLES:
        check.add(f"{where}.crop_style", f"unknown crop_style {crop_style!r}", f"use one of {', '.join(CROP_STYLES)}")
    crop_aspect = values.get("crop_aspect") or "square"
    if crop_aspect not in CROP_ASPECTS:
        check.add(f"{where}.crop_aspect", f"unknown crop_aspect {crop_aspect!r}", f"use one of {', '.join(CROP_ASPECTS)}")
    buckets = tuple(values.get("crop_aspect_buckets") or ())
    if crop_aspect in ("random", "closest") and values.get("crop") and not buckets \
            and check.valid(where, "crop_aspect_buckets", "crop_aspect"):
        check.add(f"{where}.crop_aspect_buckets", f"crop_aspect {crop_aspect} picks from crop_aspect_buckets, which is empty",
                  '"crop_aspect_buckets": [0.75, 1.0, 1.5]')
    if any(b <= 0 for b in buckets):
        check.add(f"{where}.crop_aspect_buckets", "aspect ratios must be positive (width / height)")
    caption_strategy = values.get("caption_strategy") or "filename"
    if caption_strategy not in CAPTION_STRATEGIES:
        check.add(f"{where}.caption_strategy", f"caption_strategy {caption_strategy!r} is not supported",
                  f"use one of {', '.join(CAPTION_STRATEGIES)}")
    if caption_strategy == "instanceprompt" and not values.get("instance_prompt") \
            and check.valid(where, "instance_prompt", "caption_strategy"):
        check.add(f"{where}.instance_prompt", "caption_strategy instanceprompt needs instance_prompt",
                  '"instance_prompt": "a photo of sks"')
    metadata_backend = values.get("metadata_backend") or "discovery"
    if metadata_backend not in METADATA_BACKENDS:
        check.add(f"{where}.metadata_backend", f"metadata_backend {metadata_backend!r} is not supported",
                  'use "discovery" (files are scanned and their metadata cached beside the latents)')
    repeats = _first_set(values.get("repeats"), 0)
    if repeats < 0:
        check.add(f"{where}.repeats", "must be 0 or more (0: every sample once per epoch)")
    probability = values.get("probability")
    probability = 1.0 if probability is None else probability
    if not 0 < probability <= 1:
        check.add(f"{where}.probability", "must be in (0, 1]: the chance a slot of this dataset is drawn")
    dropout = values.get("caption_dropout_probability")
    dropout = _global(config, "caption_dropout_probability", 0.0) if dropout is None else dropout
    if not 0 <= dropout <= 1:
        check.add(f"{where}.caption_dropout_probability", "must be between 0 and 1")
    rounding = values.get("aspect_bucket_rounding")
    rounding = _global(config, "aspect_bucket_rounding", 2) if rounding is None else rounding
    for key in ("minimum_image_size", "maximum_image_size", "target_downsample_size"):
        value = values.get(key) if key in values else _global(config, key, None)
        if key == "minimum_image_size" and value == 0:
            value = None  # SimpleTuner's meaning: 0 is "no minimum"
        values[key] = value
        if value is not None and value <= 0:
            check.add(f"{where}.{key}", "must be positive")
    video = VideoSection()
    if dataset_type == "video":
        video = _video_section(check, entry.get("video") or {}, where)
    elif "video" in entry:
        check.add(f"{where}.video", "only video datasets have a video section", 'remove it or set "dataset_type": "video"')
    vae_batch_size = _first_set(values.get("vae_batch_size"), _global(config, "vae_batch_size", 4))
    if vae_batch_size < 1:
        check.add(f"{where}.vae_batch_size", "must be at least 1")
    conditioning = values.get("conditioning_data_dir")
    if conditioning and not Path(conditioning).is_dir():
        check.add(f"{where}.conditioning_data_dir", f"folder not found: {conditioning}",
                  "a folder of reference clips named like the dataset's files (relative paths start at the current directory)")
    downscale = _first_set(values.get("conditioning_downscale"), 1)
    if downscale < 1:
        check.add(f"{where}.conditioning_downscale", "must be at least 1 (references at the size divided by it)")
    audio_seconds = values.get("audio_seconds")
    audio = parse_audio_section(check, entry["audio"], where, dataset_type) if "audio" in entry else AudioSection()
    if "audio_seconds" in values and dataset_type != "audio":
        check.add(f"{where}.audio_seconds", "only audio datasets read a fixed length of sound",
                  'remove it or set "dataset_type": "audio"')
    elif audio_seconds is not None and audio_seconds <= 0:
        check.add(f"{where}.audio_seconds", "must be positive (seconds read from the start of each file)")
    elif audio_seconds is not None and audio.duration_interval is not None:
        check.add(f"{where}.audio_seconds", "audio_seconds (one fixed length) and audio.duration_interval (lengths "
                  "rounded down to an interval) contradict each other", "keep one of them")
    s2v = tuple(values.get("s2v_datasets") or ())
    if s2v and dataset_type != "video":
        check.add(f"{where}.s2v_datasets", "only a video dataset takes its sound from linked audio datasets",
                  'remove it or set "dataset_type": "video"')
    if len(check.problems) > before:
        return None
    return MediaBackend(
        id=ident, dataset_type=dataset_type, instance_data_dir=Path(str(data_dir)), cache_dir_vae=Path(str(cache_dir)),
        resolution=float(resolution), resolution_type=resolution_type,
        minimum_image_size=values["minimum_image_size"], maximum_image_size=values["maximum_image_size"],
        target_downsample_size=values["target_downsample_size"], crop=bool(values.get("crop", False)),
        crop_style="center" if crop_style == "centre" else crop_style, crop_aspect=crop_aspect,
        crop_aspect_buckets=buckets, aspect_bucket_rounding=int(rounding),
        disable_bucket_pruning=bool(values.get("disable_bucket_pruning", _global(config, "disable_bucket_pruning", False))),
        caption_strategy=caption_strategy, instance_prompt=values.get("instance_prompt"),
        caption_dropout_probability=float(dropout), repeats=int(repeats), probability=float(probability),
        write_batch_size=write_batch_size, vae_batch_size=int(vae_batch_size), text_embeds=values.get("text_embeds"),
        video=video, conditioning_data_dir=Path(str(conditioning)) if conditioning else None,
        conditioning_downscale=int(downscale), audio_seconds=audio_seconds, audio=audio, s2v_datasets=s2v,
    )


def _video_section(check: _Checker, section: Any, where: str) -> VideoSection:
    where = f"{where}.video"
    if not isinstance(section, dict):
        check.add(where, "expected a JSON object")
        return VideoSection()
    _unknown_keys(check, section, _VIDEO_KEYS, where)
    values = {k: check.value(section, k, kind, where) for k, kind in _VIDEO_KEYS.items() if k in section}
    num_frames = values.get("num_frames") or 125
    min_frames = values.get("min_frames")
    max_frames = values.get("max_frames")
    strategy = values.get("bucket_strategy") or "aspect_ratio"
    if num_frames < 1:
        check.add(f"{where}.num_frames", "must be at least 1")
    if strategy not in BUCKET_STRATEGIES:
        check.add(f"{where}.bucket_strategy", f"unknown bucket_strategy {strategy!r}",
                  f"use one of {', '.join(BUCKET_STRATEGIES)}")
    if min_frames is not None and min_frames < 1:
        check.add(f"{where}.min_frames", "must be at least 1")
    if min_frames is not None and strategy == "aspect_ratio" and min_frames < num_frames \
            and check.valid(where, "num_frames", "bucket_strategy"):
        check.add(f"{where}.min_frames", f"min_frames {min_frames} is below num_frames {num_frames}: with bucket_strategy "
                  "aspect_ratio every clip is cut to num_frames, so shorter clips cannot be used",
                  "set min_frames >= num_frames, or use bucket_strategy resolution_frames for mixed lengths")
    if max_frames is not None and min_frames is not None and max_frames < min_frames \
            and check.valid(where, "min_frames", "max_frames"):
        check.add(f"{where}.max_frames", f"max_frames {max_frames} is below min_frames {min_frames}")
    interval = values.get("frame_interval")
    if interval is not None and interval < 1:
        check.add(f"{where}.frame_interval", "must be at least 1")
    if interval is not None and strategy != "resolution_frames" and check.valid(where, "bucket_strategy"):
        check.add(f"{where}.frame_interval", f"has no effect with bucket_strategy {strategy}: it rounds frame counts "
                  "of resolution_frames buckets", 'remove it, or set "bucket_strategy": "resolution_frames"')
    rate = values.get("frame_rate")
    if rate is not None and rate <= 0:
        check.add(f"{where}.frame_rate", "must be positive (frames per second the clips are trained at)")
    return VideoSection(num_frames=num_frames, min_frames=min_frames, max_frames=max_frames,
                        is_i2v=None if values.get("is_i2v") is None else bool(values["is_i2v"]), bucket_strategy=strategy,
                        frame_interval=interval, frame_rate=rate)


def backend_summary(backend: MediaBackend) -> str:
    """One line describing a backend's effective settings (for reports)."""
    parts = {"type": backend.dataset_type, "resolution": f"{backend.resolution:g} ({backend.resolution_type})",
             "crop": f"{backend.crop_style}/{backend.crop_aspect}" if backend.crop else "no", "repeats": backend.repeats}
    if backend.is_video:
        parts["frames"] = backend.video.num_frames
        parts["buckets"] = backend.video.bucket_strategy
    return json.dumps(parts)
