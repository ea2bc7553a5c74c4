"""Reading and checking ``data_backend_config`` (SimpleTuner's ``multidatabackend.json``).

Every backend is validated before anything is scanned; all problems are collected and each names
the dataset id and the key, so the user fixes the whole file in one go.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtrain.builtin_options import MAX_BATCH, MAX_FRAMES, MAX_SIDE_PX
from vtrain.errors import ConfigError, Problem
from vtrain.options import CoercionError, coerce_value

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
    "audio_seconds": "float",
}
_TEXT_KEYS: dict[str, str] = {"cache_dir": "path"}
_VIDEO_KEYS: dict[str, str] = {
    "num_frames": "int", "min_frames": "int", "max_frames": "int", "is_i2v": "bool",
    "bucket_strategy": "str", "frame_interval": "int",
}
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")
# Bounds of dataset numbers (checked where the value is read, so each error names the key). Sizes far
# beyond any machine are refused here instead of ending in an out-of-memory error after minutes.
MAX_REPEATS = 100_000
_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "repeats": (0, MAX_REPEATS), "write_batch_size": (1, 100_000), "vae_batch_size": (1, MAX_BATCH),
    "aspect_bucket_rounding": (0, 6), "probability": (None, None), "caption_dropout_probability": (0, 1),
    "num_frames": (1, MAX_FRAMES), "min_frames": (1, MAX_FRAMES), "max_frames": (1, MAX_FRAMES),
    "frame_interval": (1, MAX_FRAMES), "audio_seconds": (None, 3600), "conditioning_downscale": (None, 64),
}


@dataclass(frozen=True)
class VideoSection:
    """The ``video`` section of a video backend."""

    num_frames: int = 125
    min_frames: int | None = None
    max_frames: int | None = None
    is_i2v: bool | None = None  # None: the family's traits.i2v_default
    bucket_strategy: str = "aspect_ratio"
    frame_interval: int | None = None


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
    audio_seconds: float = 5.0  # audio datasets: seconds read from the start of each file

    @property
    def is_video(self) -> bool:
        return self.dataset_type == "video"

    @property
    def is_audio(self) -> bool:
        return self.dataset_type == "audio"


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


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.invalid: set[str] = set()  # "where.key" of values that could not be read

    def add(self, where: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(f"{self.source}: {where}", message, fix))

    def value(self, entry: dict[str, Any], key: str, kind: str, where: str) -> Any:
        raw = entry[key]
        try:
            return _coerce(raw, kind, key)
        except CoercionError as exc:
            self.add(f"{where}.{key}", str(exc))
            self.invalid.add(f"{where}.{key}")
            return None

    def valid(self, where: str, *keys: str) -> bool:
        """Whether none of ``keys`` was refused: a check that combines values runs only on real values,
        never on the default that stands in for a refused one (that would be a second, false error)."""
        return not any(f"{where}.{key}" in self.invalid for key in keys)


def _coerce(raw: Any, kind: str, key: str = "") -> Any:
    """Dataset values go through the options' coercion (:func:`vtrain.options.coerce_value`): a value
    reads the same in a dataset as at the top level."""
    if raw is None:
        return None
    low, high = _LIMITS.get(key, (None, None))
    if kind == "list":
        items = raw if isinstance(raw, list) else [raw] if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            else None
        if items is None:
            raise CoercionError(f"expected a list of numbers, got {raw!r}")
        return [coerce_value(item, "float") for item in items]
    if kind == "dict":
        if not isinstance(raw, dict):
            raise CoercionError(f"expected a JSON object, got {raw!r}")
        return raw
    return coerce_value(raw, kind, minimum=low, maximum=high)


#: SimpleTuner dataset keys accepted with no effect here, and why.
SIMPLETUNER_DATASET_NO_EFFECT: dict[str, str] = {
    "hash_filenames": "vtrain names cache files by content and settings",
    "preserve_data_backend_cache": "caches are keyed by content and settings and reused when valid",
    "skip_file_discovery": "new files are scanned, known ones reuse their cached metadata",
    "metadata_update_interval": "a speed setting of SimpleTuner's metadata writer",
    "text_cache_ondemand": "the text-embedding cache is always built before the first update",
    "vae_cache_ondemand": "the latent cache is always built before the first update",
    "text_encoder_batch_size": "a speed setting of the caching pass",
    "delete_unwanted_images": "vtrain never deletes inputs that do not fit (they are skipped)",
    "disable_multiline_split": "caption files are read whole",
}
#: SimpleTuner dataset keys vtrain refuses, and why.
SIMPLETUNER_DATASET_REFUSED: dict[str, str] = {
    "dataset_name": "a key of SimpleTuner's huggingface backend; vtrain reads local folders (\"type\": \"local\")",
    "huggingface": "a key of SimpleTuner's huggingface backend; vtrain reads local folders (\"type\": \"local\")",
    "aws_bucket_name": "a key of SimpleTuner's aws backend; vtrain reads local folders",
    "parquet": "SimpleTuner's parquet caption source is not supported; use textfile captions",
    "conditioning": "conditioning datasets (controlnet, edits) are not supported",
    "conditioning_data": "conditioning datasets (controlnet, edits) are not supported",
    "conditioning_type": "conditioning datasets (controlnet, edits) are not supported",
    "caption_filter_list": "caption filtering is not supported; edit the captions",
    "caption_shuffle": "caption shuffling is not supported",
    "is_regularisation_data": "regularisation datasets are not supported",
    "max_num_samples": "limit a dataset by the files in its folder",
    "start_epoch": "per-epoch dataset scheduling is not supported",
    "end_epoch": "per-epoch dataset scheduling is not supported",
    "minimum_aspect_ratio": "aspect-ratio filtering is not supported",
    "maximum_aspect_ratio": "aspect-ratio filtering is not supported",
    "max_upscale_threshold": "inputs are resized to the bucket resolution",
    "vae_cache_clear_each_epoch": "the latent cache is kept between epochs (latents are re-drawn per use, see vae_latent_sampling)",
    "prepend_instance_prompt": "use caption_strategy instanceprompt or write the prefix into the captions",
    "only_instance_prompt": "use caption_strategy instanceprompt",
    "slider_strength": "slider training is not supported",
    "source_dataset_id": "derived datasets are not supported",
    "train_batch_size": "the batch size is the run's train_batch_size",
    "image_embeds": "image embeddings are not used by this family",
    "conditioning_image_embeds": "image embeddings are not used by this family",
    "timestep_sampling_offset": "timestep sampling is set by the run's flow_* keys",
    "delete_nsfw_images": "vtrain has no NSFW filter",
}


def _unknown_keys(check: _Checker, entry: dict[str, Any], known: dict[str, str], where: str) -> None:
    import logging

    for key in entry:
        if key in SIMPLETUNER_DATASET_NO_EFFECT:
            logging.getLogger("vtrain.data").warning("%s.%s: accepted, no effect in vtrain: %s", where, key,
                                                     SIMPLETUNER_DATASET_NO_EFFECT[key])
        elif key in SIMPLETUNER_DATASET_REFUSED:
            check.add(f"{where}.{key}", f"SimpleTuner's dataset key {key} is not supported: "
                      f"{SIMPLETUNER_DATASET_REFUSED[key]}", "remove the key (see docs/differences-from-simpletuner.md)")
        elif key not in known:
            close = difflib.get_close_matches(key, list(known), n=2, cutoff=0.6)
            fix = f"did you mean {' or '.join(close)}?" if close else f"supported keys: {', '.join(sorted(known))}"
            check.add(f"{where}.{key}", "unknown key (not supported by this dataset type)", fix)


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
    audio_seconds = _first_set(values.get("audio_seconds"), 5.0)
    if "audio_seconds" in values and dataset_type != "audio":
        check.add(f"{where}.audio_seconds", "only audio datasets read a fixed length of sound",
                  'remove it or set "dataset_type": "audio"')
    elif audio_seconds <= 0:
        check.add(f"{where}.audio_seconds", "must be positive (seconds read from the start of each file)")
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
        conditioning_downscale=int(downscale), audio_seconds=float(audio_seconds),
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
    return VideoSection(num_frames=num_frames, min_frames=min_frames, max_frames=max_frames,
                        is_i2v=None if values.get("is_i2v") is None else bool(values["is_i2v"]), bucket_strategy=strategy, frame_interval=interval)


def backend_summary(backend: MediaBackend) -> str:
    """One line describing a backend's effective settings (for reports)."""
    parts = {"type": backend.dataset_type, "resolution": f"{backend.resolution:g} ({backend.resolution_type})",
             "crop": f"{backend.crop_style}/{backend.crop_aspect}" if backend.crop else "no", "repeats": backend.repeats}
    if backend.is_video:
        parts["frames"] = backend.video.num_frames
        parts["buckets"] = backend.video.bucket_strategy
    return json.dumps(parts)
