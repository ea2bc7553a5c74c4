"""Filling a :class:`~vtrain.data.cache.CacheStore`: batched encoding, buffered atomic writes,
resumption, a progress bar, and a split of the work across processes."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtrain.data.cache import CacheStore, non_finite
from vtrain.data.media_io import MediaError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CacheJob:
    """One entry to build: its key, how to load its input, and which inputs may share a batch.

    ``load()`` returns a tensor (pixels ``(F, C, H, W)``) or a string (a caption) and may raise
    :class:`~vtrain.data.media_io.MediaError`.
    """

    key: str
    load: Callable[[], Any]
    group: Hashable
    label: str
    meta: tuple[tuple[str, str], ...] = ()


@dataclass
class CacheReport:
    """What one process did while building a cache."""

    total: int = 0  # distinct entries needed
    cached_before: int = 0
    built: int = 0
    failed: int = 0
    rebuilt_damaged: int = 0  # damaged entries found, removed and queued for rebuilding
    encode_calls: int = 0
    seconds: float = 0.0


def share_for_rank(keys: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The keys process ``rank`` of ``world_size`` builds: a disjoint, balanced share of the sorted keys."""
    return sorted(keys)[rank::world_size]


def build_cache(
    jobs: Sequence[CacheJob],
    store: CacheStore,
    encode: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    input_name: str,
    batch_size: int,
    write_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    description: str = "caching",
    unit: str = "item",
    show_progress: bool = True,
    say: Callable[[str], Any] = print,
) -> CacheReport:
    """Encode every job whose entry is missing from ``store`` (this rank's share) and write it.

    Inputs of one ``group`` are encoded together, ``batch_size`` at a time; finished entries are
    written in groups of ``write_batch_size`` (each file atomically), so after a kill at most the
    unwritten buffer is redone. A job whose input cannot be read is recorded as a failure in the
    store (so every rank can report it) and the build goes on.

    Existing entries of this rank's share are verified first (their checksums and values): a
    damaged one is removed and rebuilt, with a note naming its file. An encoder output holding NaN
    or infinite values is never written: it is recorded as the sample's failure.
    """
    import time

    started = time.perf_counter()
    unique: dict[str, CacheJob] = {}
    for job in jobs:
        unique.setdefault(job.key, job)
    report = CacheReport(total=len(unique))
    # shares are cut from every key (not just the missing ones): a rank that starts late, when
    # others have written entries already, still computes the same split
    share = share_for_rank(list(unique), rank, world_size)
    for key in share:
        damage = store.verify(key)
        if damage is not None:
            say(f"note: cache entry {store.path_of(key)} ({unique[key].label}) is damaged: {damage}; rebuilding it")
            store.discard(key)
            report.rebuilt_damaged += 1
    mine = [unique[key] for key in share if not store.has(key)]
    report.cached_before = sum(1 for key in unique if store.has(key))
    if not mine:
        report.seconds = time.perf_counter() - started
        return report
    groups: dict[Hashable, list[CacheJob]] = {}
    for job in mine:
        groups.setdefault(job.group, []).append(job)
    progress = _progress(len(mine), description, unit, show_progress and rank == 0)
    buffer: list[tuple[CacheJob, dict[str, torch.Tensor]]] = []

    def flush() -> None:
        for job, tensors in buffer:
            bad = non_finite(tensors)
            if bad:
                store.record_failure(job.key, f"the encoder returned NaN or infinite values ({', '.join(bad)})")
                report.failed += 1
                continue
            store.write(job.key, tensors, dict(job.meta))
            report.built += 1
        buffer.clear()

    try:
        for group_key in sorted(groups, key=str):
            members = groups[group_key]
            for start in range(0, len(members), batch_size):
                batch_jobs, inputs = [], []
                for job in members[start : start + batch_size]:
                    try:
                        inputs.append(job.load())
                        batch_jobs.append(job)
                    except MediaError as exc:
                        store.record_failure(job.key, str(exc))
                        report.failed += 1
                        _advance(progress)
                if not batch_jobs:
                    continue
                outputs = _encode(encode, input_name, inputs)
                report.encode_calls += 1
                for index, job in enumerate(batch_jobs):
                    buffer.append((job, {name: value[index] for name, value in outputs.items()}))
                    _advance(progress)
                if len(buffer) >= write_batch_size:
                    flush()
        flush()
    finally:
        if progress is not None:
            progress.close()
    report.seconds = time.perf_counter() - started
    return report


def _encode(encode: Callable[[dict[str, Any]], dict[str, Any]], input_name: str, inputs: list[Any]) -> dict[str, Any]:
    import torch

    if isinstance(inputs[0], torch.Tensor):  # pixels, audio; a single clip is not copied (long clips are large)
        batch: dict[str, Any] = {input_name: inputs[0].unsqueeze(0) if len(inputs) == 1 else torch.stack(inputs)}
    else:
        batch = {input_name: list(inputs)}
    with torch.no_grad():
        outputs = encode(batch)
    if not isinstance(outputs, dict) or not outputs:
        raise TypeError(f"encode_batch returned {type(outputs).__name__}; expected a dict of per-sample tensors")
    for name, value in outputs.items():
        if not isinstance(value, torch.Tensor) or value.shape[:1] != (len(inputs),):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"encode_batch output {name!r} is {shape}; expected a tensor with first dimension "
                            f"{len(inputs)} (one row per sample)")
    return outputs


def _progress(total: int, description: str, unit: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, mininterval=0.5)


def _advance(progress: Any) -> None:
    if progress is not None:
        progress.update(1)
