"""Reading one dataset value: coercion, bounds, and how problems are collected (for :mod:`vtrain.data.spec`).

Also the tables of SimpleTuner dataset keys that vtrain accepts without effect or refuses, and the
unknown-key check that uses them.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from vtrain.builtin_options import MAX_BATCH, MAX_FRAMES
from vtrain.errors import Problem
from vtrain.options import CoercionError, coerce_value

MAX_REPEATS = 100_000
# Bounds of dataset numbers (checked where the value is read, so each error names the key). Sizes far
# beyond any machine are refused here instead of ending in an out-of-memory error after minutes.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "repeats": (0, MAX_REPEATS), "write_batch_size": (1, 100_000), "vae_batch_size": (1, MAX_BATCH),
    "aspect_bucket_rounding": (0, 6), "probability": (None, None), "caption_dropout_probability": (0, 1),
    "num_frames": (1, MAX_FRAMES), "min_frames": (1, MAX_FRAMES), "max_frames": (1, MAX_FRAMES),
    "frame_interval": (1, MAX_FRAMES), "audio_seconds": (None, 3600), "conditioning_downscale": (None, 64),
    "frame_rate": (None, 1000), "sample_rate": (1000, 384_000), "channels": (1, 2), "duration_interval": (None, 3600),
    "min_duration_seconds": (0, 36_000), "max_duration_seconds": (None, 36_000),
}


class Checker:
    """Collects the problems of one ``data_backend_config``; each names the file, the dataset and the key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.invalid: set[str] = set()  # "where.key" of values that could not be read

    def add(self, where: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(f"{self.source}: {where}", message, fix))

    def value(self, entry: dict[str, Any], key: str, kind: str, where: str) -> Any:
        raw = entry[key]
        try:
            return coerce(raw, kind, key)
        except CoercionError as exc:
            self.add(f"{where}.{key}", str(exc))
            self.invalid.add(f"{where}.{key}")
            return None

    def valid(self, where: str, *keys: str) -> bool:
        """Whether none of ``keys`` was refused: a check that combines values runs only on real values,
        never on the default that stands in for a refused one (that would be a second, false error)."""
        return not any(f"{where}.{key}" in self.invalid for key in keys)


def coerce(raw: Any, kind: str, key: str = "") -> Any:
    """Dataset values go through the options' coercion (:func:`vtrain.options.coerce_value`): a value
    reads the same in a dataset as at the top level. Extra kinds: ``list`` (of numbers), ``dict``,
    ``ids`` (one id or a list of ids)."""
    if raw is None:
        return None
    low, high = LIMITS.get(key, (None, None))
    if kind == "list":
        items = raw if isinstance(raw, list) else [raw] if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            else None
        if items is None:
            raise CoercionError(f"expected a list of numbers, got {raw!r}")
        return [coerce_value(item, "float") for item in items]
    if kind == "ids":
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise CoercionError(f"expected a dataset id or a list of dataset ids, got {raw!r}")
        return list(items)
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


def unknown_keys(check: Checker, entry: dict[str, Any], known: dict[str, str], where: str,
                 no_effect: dict[str, str] | None = None, refused: dict[str, str] | None = None) -> None:
    """Report every key of ``entry`` that is not in ``known``: a SimpleTuner key without effect is logged,
    a refused one and an unknown one (with the closest known names) are problems."""
    no_effect = SIMPLETUNER_DATASET_NO_EFFECT if no_effect is None else no_effect
    refused = SIMPLETUNER_DATASET_REFUSED if refused is None else refused
    for key in entry:
        if key in known:
            continue
        if key in no_effect:
            logging.getLogger("vtrain.data").warning("%s.%s: accepted, no effect in vtrain: %s", where, key,
                                                     no_effect[key])
        elif key in refused:
            check.add(f"{where}.{key}", f"SimpleTuner's dataset key {key} is not supported: {refused[key]}",
                      "remove the key (see docs/differences-from-simpletuner.md)")
        else:
            close = difflib.get_close_matches(key, list(known), n=2, cutoff=0.6)
            fix = f"did you mean {' or '.join(close)}?" if close else f"supported keys: {', '.join(sorted(known))}"
            check.add(f"{where}.{key}", "unknown key (not supported by this dataset type)", fix)
