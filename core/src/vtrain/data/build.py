"""Building the training dataset of ``data_backend_config``: validate, scan, cache, check, assemble.

Model-agnostic: what the data layer needs from the model comes in through :class:`DataContext`
(the ``encode_batch`` hook as a callable, the family's traits, the frozen components to move
around when ``offload_during_startup`` is on, and the process layout for a distributed build).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtrain.data.cache import CacheStore, cache_key, file_digest
from vtrain.data.caching import CacheJob, CacheReport, build_cache
from vtrain.data.dataset import CachedVideoDataset, DatasetPart, Sample
from vtrain.data.geometry import Geometry
from vtrain.data.media_io import MediaError, load_pixels, probe
from vtrain.data.scan import ScannedItem, ScanResult, scan_backend
from vtrain.data.sound import (
    audio_dataset_identity,
    audio_dataset_job,
    audio_samples,
    audio_store,
    clip_sound_job,
)
from vtrain.data.spec import AudioSection, DataPlan, MediaBackend, parse_backends
from vtrain.errors import ConfigError, Problem
from vtrain.family import FamilyTraits

# Config keys that change cached latents / cached text embeddings when present in a run's config.
VAE_IDENTITY_KEYS = ("pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "base_model_default_dtype")
TEXT_IDENTITY_KEYS = ("pretrained_model_name_or_path", "base_model_default_dtype", "text_encoder_1_precision",
                      "tokenizer_max_length")


@dataclass
class DataContext:
    """What the data layer needs from the run.

    :param encode: the run's ``encode_batch`` hook, as ``encode(batch) -> dict of per-sample tensors``.
    :param family: the family name (part of every cache key).
    :param traits: frame rule and spatial alignment.
    :param identity: extra facts that change encoder outputs (``bundle.meta["cache_identity"]``).
    :param components: frozen parts by name, moved between CPU and ``device`` by ``offload_during_startup``.
    :param rank: this process's index; :param world_size: the number of processes.
    :param barrier: waits for every process (``accelerator.wait_for_everyone``).
    """

    encode: Callable[[dict[str, Any]], dict[str, Any]]
    family: str
    traits: FamilyTraits
    identity: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    device: Any = None
    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None
    say: Callable[[str], None] = print
    show_progress: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def build_datasets(config: Any, ctx: DataContext) -> CachedVideoDataset:
    """The run's dataset from ``config.data_backend_config``; raises :class:`ConfigError` for user errors."""
    plan = parse_backends(config["data_backend_config"], config)
    say = ctx.say if ctx.is_main else (lambda _message: None)
    scans = _scan_all(plan, config, ctx, say)
    vae_identity = _identity(config, ctx, VAE_IDENTITY_KEYS, "vae")
    text_identity = _identity(config, ctx, TEXT_IDENTITY_KEYS, "text")
    compress = bool(config.get("compress_disk_cache", False))
    text_stores = {name: CacheStore(backend.cache_dir, compress) for name, backend in plan.text.items()}
    vae_keys: dict[tuple[str, Path], str] = {}
    text_keys: dict[str, str] = {}

    def text_key(caption: str) -> str:
        if caption not in text_keys:
            text_keys[caption] = cache_key({"kind": "text", "caption": caption, **text_identity})
        return text_keys[caption]

    for scan in scans:
        for item in scan.items:
            extra = audio_dataset_identity(scan.backend, item.window, ctx.traits) \
                if scan.backend.is_audio and item.window else {}
            vae_keys[(scan.backend.id, item.path)] = cache_key({
                "kind": "latents", "source": item.digest, "dataset_type": scan.backend.dataset_type,
                "geometry": item.geometry.as_key(), **vae_identity, **extra})
            text_key(item.caption)
    empty_key = text_key("")
    reports = []
    reference_keys: dict[tuple[str, Path], str] = {}
    audio_keys: dict[tuple[str, Path], str] = {}
    with _offload(ctx, config, keep="text"):
        for name, store in text_stores.items():
            captions = {""} | {i.caption for s in scans if plan.text_backend_for(s.backend).id == name for i in s.items}
            jobs = [CacheJob(text_key(c), (lambda c=c: c), "text", c[:40]) for c in sorted(captions)]
            reports.append((f"text embeddings {name!r}", build_cache(
                jobs, store, ctx.encode, input_name="captions", batch_size=int(config.get("vae_batch_size", 4)),
                write_batch_size=plan.text[name].write_batch_size, rank=ctx.rank, world_size=ctx.world_size,
                description=f"caching text embeds ({name})", unit="caption", show_progress=ctx.show_progress,
                say=ctx.say)))
    with _offload(ctx, config, keep="vae"):
        for scan in scans:
            store = CacheStore(scan.backend.cache_dir_vae, compress)
            if scan.backend.is_audio and not ctx.traits.audio_sample_rate:
                raise ConfigError([Problem(f"data_backend_config: dataset {scan.backend.id!r}.dataset_type",
                                           f"family {ctx.family} takes no audio", "remove the audio dataset")])
            jobs = [_latent_job(scan.backend, item, vae_keys[(scan.backend.id, item.path)], ctx.traits)
                    for item in scan.items]
            reports.append((f"latents {scan.backend.id!r}", build_cache(
                jobs, store, ctx.encode, input_name="audio" if scan.backend.is_audio else "pixels",
                batch_size=scan.backend.vae_batch_size,
                write_batch_size=scan.backend.write_batch_size, rank=ctx.rank, world_size=ctx.world_size,
                description=f"caching latents ({scan.backend.id})",
                unit="image" if scan.backend.dataset_type == "image" else "clip", show_progress=ctx.show_progress,
                say=ctx.say)))
            if ctx.traits.audio_sample_rate and scan.backend.takes_sound:
                jobs = [clip_sound_job(scan.backend, item.path, item.geometry.frames, item.fps,
                                       vae_keys[(scan.backend.id, item.path)], ctx.traits) for item in scan.items]
                audio_keys.update({(scan.backend.id, item.path): job.key for item, job in zip(scan.items, jobs)})
                reports.append((f"audio latents {scan.backend.id!r}", build_cache(
                    jobs, audio_store(scan.backend, compress), ctx.encode, input_name="audio",
                    batch_size=scan.backend.vae_batch_size, write_batch_size=scan.backend.write_batch_size,
                    rank=ctx.rank, world_size=ctx.world_size, description=f"caching audio ({scan.backend.id})",
                    unit="clip", show_progress=ctx.show_progress, say=ctx.say)))
            if scan.backend.conditioning_data_dir is not None:
                jobs = [_reference_job(scan.backend, item, vae_keys[(scan.backend.id, item.path)]) for item in scan.items]
                reference_keys.update({(scan.backend.id, item.path): job.key for item, job in zip(scan.items, jobs)})
                reports.append((f"references {scan.backend.id!r}", build_cache(
                    jobs, reference_store(scan.backend, compress), ctx.encode, input_name="reference_pixels",
                    batch_size=scan.backend.vae_batch_size, write_batch_size=scan.backend.write_batch_size,
                    rank=ctx.rank, world_size=ctx.world_size, description=f"caching references ({scan.backend.id})",
                    unit="clip", show_progress=ctx.show_progress, say=ctx.say)))
    ctx.barrier()
    for label, report in reports:
        say(f"{label}: {report.total} entries, {report.cached_before} already cached, {report.built} built"
            + (f", {report.failed} unreadable" if report.failed else "") + f" on this process ({report.seconds:.1f}s)")
    return _assemble(plan, scans, config, vae_keys, text_keys, empty_key, text_stores, say, reports,
                     i2v_default=ctx.traits.i2v_default, audio_rate=ctx.traits.audio_sample_rate,
                     reference_keys=reference_keys, audio_keys=audio_keys)


def _scan_all(plan: DataPlan, config: Any, ctx: DataContext, say: Callable[[str], None]) -> list[ScanResult]:
    delete = bool(config.get("delete_problematic_images", False))
    scans: list[ScanResult] = []
    if not ctx.is_main:
        ctx.barrier()  # let the main process delete files and write the metadata first
    for backend in plan.media:
        scans.append(scan_backend(backend, ctx.traits, delete and ctx.is_main, save_metadata=ctx.is_main, say=say))
    if ctx.is_main:
        ctx.barrier()
    return scans


def _identity(config: Any, ctx: DataContext, keys: tuple[str, ...], kind: str) -> dict[str, Any]:
    identity: dict[str, Any] = {"family": ctx.family, "extra": ctx.identity.get(kind, ctx.identity.get("all"))}
    for key in keys:
        if key in config and config[key] is not None:
            identity[key] = str(config[key])
            if key.endswith("_name_or_path") and Path(str(config[key])).is_dir():
                identity[key + ":files"] = _folder_fingerprint(Path(str(config[key])))
    return identity


def _folder_fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and modification times of a local model folder's weight and config files."""
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".json", ".model", ".pt"):
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return entries


def _latent_job(backend: MediaBackend, item: ScannedItem, key: str, traits: FamilyTraits) -> CacheJob:
    if backend.is_audio and item.window:  # an audio dataset's "latents" are its encoded sound (``audio``)
        return audio_dataset_job(backend, item.path, item.window, key, traits)
    meta = (("source", str(item.path)), ("fps", f"{item.fps:g}"), ("frames", str(item.geometry.frames)),
            ("size", "x".join(map(str, item.geometry.size))))
    return CacheJob(key, lambda: load_pixels(item.path, item.info, item.geometry),
                    (item.geometry.size, item.geometry.frames), str(item.path), meta)


def reference_store(backend: MediaBackend, compress: bool) -> CacheStore:
    """Where a backend's encoded reference clips live (``conditioning_data_dir``), under the samples' keys."""
    return CacheStore(backend.cache_dir_vae / "reference", compress)


def _reference_job(backend: MediaBackend, item: ScannedItem, key: str) -> CacheJob:
    """The paired reference of ``item``: the same relative path under ``conditioning_data_dir``, the same frames,
    at the sample's size divided by ``conditioning_downscale``. Encoded as ``reference_pixels``."""
    assert backend.conditioning_data_dir is not None
    source = backend.conditioning_data_dir / item.path.relative_to(backend.instance_data_dir)
    width, height = (side // backend.conditioning_downscale for side in item.geometry.size)
    geometry = Geometry(item.geometry.frames, (width, height), (0, 0, width, height), (width, height))

    def load() -> Any:
        if not source.is_file():
            raise MediaError(f"no reference clip {source} (conditioning_data_dir)")
        return load_pixels(source, probe(source, backend.is_video), geometry)

    digest = file_digest(source) if source.is_file() else "missing"
    return CacheJob(cache_key({"kind": "reference", "sample": key, "source": digest, "geometry": geometry.as_key()}),
                    load, (geometry.size, geometry.frames), str(source), (("source", str(source)),))


class _offload:
    """``offload_during_startup``: only the encoder in use sits on the accelerator while caching."""

    def __init__(self, ctx: DataContext, config: Any, keep: str) -> None:
        self.enabled = bool(config.get("offload_during_startup", False)) and ctx.device is not None
        self.ctx, self.keep = ctx, keep
        self.moved: list[tuple[Any, Any]] = []

    def _kind(self, name: str) -> str | None:
        if name.startswith("text_encoder"):
            return "text"
        if "vae" in name:  # vae, audio_vae ...: every latent encoder caches in the same phase
            return "vae"
        return None

    def __enter__(self) -> _offload:
        if not self.enabled:
            return self
        ordered = sorted(self.ctx.components.items(), key=lambda kv: self._kind(kv[0]) == self.keep)
        for name, module in ordered:  # others leave first, then the one in use arrives
            kind = self._kind(name)
            if kind is None or not hasattr(module, "to"):
                continue
            device = _device_of(module)
            target = self.ctx.device if kind == self.keep else "cpu"
            if device is not None and str(device) != str(target):
                module.to(target)
                self.moved.append((module, device))
        return self

    def __exit__(self, *exc: Any) -> None:
        for module, device in reversed(self.moved):
            module.to(device)


def _device_of(module: Any) -> Any:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return getattr(module, "device", None)


def _assemble(plan: DataPlan, scans: list[ScanResult], config: Any, vae_keys: dict[tuple[str, Path], str],
              text_keys: dict[str, str], empty_key: str, text_stores: dict[str, CacheStore],
              say: Callable[[str], None], cache_reports: list[tuple[str, CacheReport]],
              i2v_default: bool = False, audio_rate: int = 0,
              reference_keys: dict[tuple[str, Path], str] | None = None,
              audio_keys: dict[tuple[str, Path], str] | None = None) -> CachedVideoDataset:
    batch = int(config.get("train_batch_size", 1))
    per_update = batch * int(config.get("gradient_accumulation_steps", 1))
    compress = bool(config.get("compress_disk_cache", False))
    parts: list[DatasetPart] = []
    slots: list[tuple[int, int]] = []
    lines: list[str] = []
    problems: list[Problem] = []
    eval_id = config.get("eval_dataset_id")
    eval_part: DatasetPart | None = None
    for scan in scans:
        backend = scan.backend
        store = CacheStore(backend.cache_dir_vae, compress)
        sounds = audio_store(backend, compress) if audio_rate and backend.takes_sound else None
        references = reference_store(backend, compress) if backend.conditioning_data_dir is not None else None
        skipped = list(scan.skipped)
        silent: list[tuple[Path, str]] = []
        samples: list[Sample] = []
        for item in scan.items:
            key = vae_keys[(backend.id, item.path)]
            if not store.has(key):
                skipped.append((item.path, store.failure(key) or "not in the cache after building (see the log above)"))
                continue
            reference_key = (reference_keys or {}).get((backend.id, item.path)) if references is not None else None
            if references is not None and (reference_key is None or not references.has(reference_key)):
                reason = references.failure(reference_key) if reference_key else None
                skipped.append((item.path, reason or "its reference is not in the cache"))
                continue
            audio_key, bucket = None, item.bucket
            sound_key = (audio_keys or {}).get((backend.id, item.path), "")
            if sounds is not None and sound_key and sounds.has(sound_key):  # with sound: its own bucket, so batches never mix
                audio_key, bucket = sound_key, f"{item.bucket}+audio{audio_samples(item.geometry.frames, item.fps, audio_rate)}"
            elif sounds is not None:
                silent.append((item.path, (sound_key and sounds.failure(sound_key)) or "no audio in the cache"))
            samples.append(Sample(backend.id, item.path, bucket, key, text_keys[item.caption],
                                  _is_i2v(backend, i2v_default), 0.0 if backend.is_audio else item.fps,
                                  audio_key, reference_key))
        if eval_id and backend.id == eval_id:  # held out: validation inputs and evaluation loss, never trained on
            eval_part = DatasetPart(backend.id, samples, store, text_stores[plan.text_backend_for(backend).id], 0, 1.0,
                                    0.0, sounds, references)
            lines.append(f"dataset {backend.id!r} ({backend.dataset_type}): {len(samples)} usable, held out by "
                         "eval_dataset_id (validation inputs, evaluation loss), not trained on")
            lines.extend(f"  skipped {path}: {reason}" for path, reason in skipped)
            continue
        copies = 1 + backend.repeats
        by_bucket: dict[str, list[int]] = {}
        for index, sample in enumerate(samples):
            by_bucket.setdefault(sample.bucket, []).append(index)
        part_slots: list[tuple[int, int]] = []
        kept: dict[str, int] = {}
        for bucket in sorted(by_bucket):
            members = [(len(parts), i) for i in by_bucket[bucket]] * copies
            if len(members) < batch and not backend.disable_bucket_pruning:
                for i in by_bucket[bucket]:
                    skipped.append((samples[i].path, f"bucket {bucket} holds {len(members)} sample(s) with repeats, fewer "
                                    f"than train_batch_size {batch} (pruned; disable_bucket_pruning keeps it)"))
                continue
            if backend.disable_bucket_pruning and len(members) % batch:
                pad = batch - len(members) % batch  # pad (cycling) to whole batches so every sample trains each epoch
                members += [members[i % len(members)] for i in range(pad)]
            part_slots.extend(members)
            kept[bucket] = len(members)
        counts = ", ".join(f"{k}: {v}" for k, v in kept.items()) or "none"
        lines.append(f"dataset {backend.id!r} ({backend.dataset_type}, {backend.instance_data_dir}): {len(samples)} "
                     f"usable, {len(part_slots)} per epoch with repeats {backend.repeats}; buckets {counts}")
        if backend.is_video:
            lines.append(f"  frames: num_frames {backend.video.num_frames}, family rule {scan_rule(scan)}, "
                         f"bucket_strategy {backend.video.bucket_strategy}")
        if sounds is not None:
            origin = f" (from s2v_datasets {', '.join(backend.s2v_datasets)})" if backend.sound_sources else ""
            lines.append(f"  sound: {len(samples) - len(silent)} clip(s) with sound{origin}, {len(silent)} without "
                         "(trained video-only)")
            lines.extend(f"    no sound {path}: {reason}" for path, reason in silent)
        if not audio_rate and backend.is_video and (backend.audio != AudioSection() or backend.s2v_datasets):
            lines.append("  sound: this family takes no audio: the dataset's audio block and s2v_datasets have no effect")
        if audio_rate and backend.is_video and not backend.takes_sound:
            lines.append("  sound: not read (audio.auto_split is false): the dataset trains video only")
        if scan.filtered or backend.audio.min_duration_seconds is not None or backend.audio.max_duration_seconds is not None:
            lines.append(f"  duration: {scan.filtered.get('min_duration_seconds', 0)} shorter than min_duration_seconds, "
                         f"{scan.filtered.get('max_duration_seconds', 0)} longer than max_duration_seconds (skipped)")
        for path, reason in skipped:
            lines.append(f"  skipped {path}: {reason}")
        for path, reason in scan.deleted:
            lines.append(f"  deleted {path}: {reason}")
        if max(kept.values(), default=0) < per_update or len(part_slots) <= backend.vae_batch_size:
            problems.append(_too_small(backend, samples, by_bucket, copies, per_update, skipped))
        parts.append(DatasetPart(backend.id, samples, store, text_stores[plan.text_backend_for(backend).id],
                                 backend.repeats, backend.probability, backend.caption_dropout_probability, sounds,
                                 references))
        slots.extend(part_slots)
    if eval_id and (eval_part is None or not eval_part.samples):
        problems.append(Problem("eval_dataset_id", f"no usable samples in a dataset called {eval_id!r}" if eval_part
                                else f"no enabled dataset of data_backend_config is called {eval_id!r}",
                                f"use one of: {', '.join(s.backend.id for s in scans)}"))
    elif eval_id and not parts:
        problems.append(Problem("eval_dataset_id", f"{eval_id!r} is the only dataset, and it is held out: nothing "
                                "would train", "add a training dataset, or remove eval_dataset_id"))
    for line in lines:
        say(line)
    if problems:
        raise ConfigError(problems)
    for label, report in cache_reports:
        lines.append(f"cache {label}: {report.total} entries ({report.cached_before} reused)")
    dataset = CachedVideoDataset(parts, slots, empty_key, int(config.get("seed", 0)), lines)
    if eval_part is not None:
        dataset.eval_dataset = CachedVideoDataset([eval_part], [(0, i) for i in range(len(eval_part.samples))],
                                                  empty_key, int(config.get("seed", 0)), [])
    return dataset


def _is_i2v(backend: MediaBackend, family_default: bool) -> bool:
    """``video.is_i2v`` when the dataset sets it, else the family's default; images never are."""
    if not backend.is_video:
        return False
    return family_default if backend.video.is_i2v is None else backend.video.is_i2v


def scan_rule(scan: ScanResult) -> str:
    frames = sorted({item.geometry.frames for item in scan.items})
    return f"frames used {frames}" if frames else "no usable clips"


def _too_small(backend: MediaBackend, samples: list[Sample], by_bucket: dict[str, list[int]], copies: int,
               per_update: int, skipped: list[tuple[Path, str]]) -> Problem:
    counts = {bucket: len(indices) for bucket, indices in by_bucket.items()}
    where = f"data_backend_config: dataset {backend.id!r}"
    if not samples:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5]) or f"no media files in {backend.instance_data_dir}"
        return Problem(where, f"no samples detected in dataset ({reasons})",
                       "add readable files with captions, or fix the reasons above; with few samples raise repeats")
    largest = max(counts.values())
    needed_repeats = max(math.ceil(per_update / largest), math.ceil((backend.vae_batch_size + 1) / len(samples))) - 1
    return Problem(
        where,
        f"too few samples: {len(samples)} usable (per bucket: {counts}) x {copies} with repeats {backend.repeats}, "
        f"but a dataset needs at least train_batch_size x gradient_accumulation_steps = {per_update} samples of one "
        f"bucket and more than vae_batch_size = {backend.vae_batch_size}",
        f'set "repeats": {needed_repeats} (or more), add data, or lower train_batch_size / vae_batch_size')
