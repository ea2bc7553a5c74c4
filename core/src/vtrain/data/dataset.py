"""The training dataset over cached samples: repeats, buckets, dataset probabilities, caption dropout."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.data.cache import CacheEntryError, CacheStore
from vtrain.errors import TrainingError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Sample:
    """One cached training sample: where its latents and caption embedding are."""

    dataset: str
    path: Path
    bucket: str
    vae_key: str
    text_key: str
    is_i2v: bool
    fps: float
    audio_key: str | None = None  # the clip's sound in the part's audio store (None: a clip without sound)
    reference_key: str | None = None  # its paired reference clip in the part's reference store


@dataclass(frozen=True)
class DatasetPart:
    """One backend's contribution: its samples, stores and sampling settings."""

    id: str
    samples: list[Sample]
    vae_store: CacheStore
    text_store: CacheStore
    repeats: int
    probability: float
    caption_dropout: float
    audio_store: CacheStore | None = None
    reference_store: CacheStore | None = None


def stable_uniform(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (deterministic across processes and runs)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class CachedVideoDataset:
    """A :class:`~vtrain.data.base.TrainDataset` over one or more cached backends.

    Index space: every sample of every part appears ``1 + repeats`` times (SimpleTuner's repeats:
    0 means once per epoch), plus padding duplicates in buckets kept by ``disable_bucket_pruning``.
    Datasets are therefore drawn in proportion to their (repeated) size. When a part has a
    ``probability`` below 1, the slots of each bucket are re-dealt every epoch (seeded by seed and
    epoch) so each part fills a share proportional to ``probability x its slots``.

    A sample is the part's cached latents (and, for a family that takes audio, the cached encoding of
    the clip's sound) merged with its caption's cached embedding (or the empty-prompt embedding,
    with the part's ``caption_dropout`` chance, decided by seed, epoch and index), plus ``is_i2v``
    as a bool tensor.
    """

    def __init__(self, parts: list[DatasetPart], slots: list[tuple[int, int]], empty_text_key: str,
                 seed: int, report: list[str]) -> None:
        self.parts = parts
        self.slots = slots  # (part index, sample index) per dataset index
        self.empty_text_key = empty_text_key
        self.seed = seed
        self.report = report
        self.epoch = 0
        self._dealt: dict[int, list[tuple[int, int]]] = {}
        self.excluded: set[tuple[int, int]] = set()
        self.eval_dataset: CachedVideoDataset | None = None  # the dataset named by eval_dataset_id (held out)
        self._text_memo: dict[tuple[int, str], dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.slots)

    def bucket_of(self, index: int) -> Hashable:
        part, sample = self.slots[index]
        return self.parts[part].samples[sample].bucket

    def sample_of(self, index: int) -> Hashable:
        """The (part, sample) slot ``index`` holds: the same for every repeat copy of one sample."""
        return self.slots[index]

    def exclude_samples(self, slots: set[tuple[int, int]]) -> None:
        """Never deal these (part, sample) slots into other indices (samples held out for evaluation)."""
        self.excluded = set(slots)
        self._dealt = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose caption dropout and dataset draws ``__getitem__`` follows."""
        self.epoch = int(epoch)

    def source_of(self, index: int) -> tuple[int, int]:
        """(part, sample) that dataset index ``index`` reads in the current epoch."""
        if all(p.probability >= 1.0 for p in self.parts):
            return self.slots[index]
        if self.epoch not in self._dealt:
            self._dealt = {self.epoch: self._deal(self.epoch)}
        return self._dealt[self.epoch][index]

    def _deal(self, epoch: int) -> list[tuple[int, int]]:
        rng = random.Random(f"{self.seed}:deal:{epoch}")
        by_bucket: dict[Hashable, list[int]] = {}
        for index in range(len(self.slots)):
            by_bucket.setdefault(self.bucket_of(index), []).append(index)
        dealt = list(self.slots)
        for key in sorted(by_bucket, key=str):
            indices = by_bucket[key]
            pools: dict[int, list[tuple[int, int]]] = {}
            for index in indices:
                if self.slots[index] not in self.excluded:
                    pools.setdefault(self.slots[index][0], []).append(self.slots[index])
            parts = sorted(pools)
            if not parts:
                continue  # every sample of this bucket is held out
            weights = [self.parts[p].probability * len(pools[p]) for p in parts]
            cursors = {p: 0 for p in parts}
            for p in parts:
                rng.shuffle(pools[p])
            for index in indices:
                part = rng.choices(parts, weights=weights)[0]
                pool = pools[part]
                dealt[index] = pool[cursors[part] % len(pool)]
                cursors[part] += 1
        return dealt

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        part_index, sample_index = self.source_of(index)
        part = self.parts[part_index]
        sample = part.samples[sample_index]
        try:
            item: dict[str, Any] = dict(part.vae_store.read(sample.vae_key))
            if sample.audio_key is not None and part.audio_store is not None:
                item.update(part.audio_store.read(sample.audio_key))  # the encoded sound of the same frames
            if sample.reference_key is not None and part.reference_store is not None:
                item.update(part.reference_store.read(sample.reference_key))
        except CacheEntryError as error:
            raise _damaged(error, sample.path) from None
        drop = part.caption_dropout > 0 and stable_uniform(self.seed, self.epoch, index, "caption") < part.caption_dropout
        try:
            item.update(self._text(part_index, self.empty_text_key if drop else sample.text_key))
        except CacheEntryError as error:
            raise _damaged(error, sample.path) from None
        item["is_i2v"] = torch.tensor(sample.is_i2v)
        item["fps"] = torch.tensor(float(sample.fps or 0.0))  # the source clip's frame rate; 0: unknown (images)
        item["sample_key"] = sample.vae_key  # content-keyed: lets plugins cache per-sample work (CREPA targets)
        return item

    def _text(self, part_index: int, key: str) -> dict[str, torch.Tensor]:
        memo_key = (part_index, key)
        cached = self._text_memo.get(memo_key)
        if cached is None:
            cached = self.parts[part_index].text_store.read(key)
            if len(self._text_memo) < 4096:
                self._text_memo[memo_key] = cached
        return dict(cached)

    def content_key(self) -> str:
        """A hash of what the dataset holds (every slot's cached sample and caption): changes with the data."""
        digest = hashlib.sha256()
        for part_index, sample_index in self.slots:
            sample = self.parts[part_index].samples[sample_index]
            digest.update(f"{sample.vae_key}:{sample.text_key}\n".encode())
        return digest.hexdigest()[:20]

    def bucket_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for index in range(len(self)):
            key = str(self.bucket_of(index))
            counts[key] = counts.get(key, 0) + 1
        return counts

    def describe(self) -> list[str]:
        return list(self.report)


def _damaged(error: CacheEntryError, source: Path) -> TrainingError:
    return TrainingError(f"the cache entry {error.path} (of {source}) was damaged during the run: {error.reason}. "
                         "Nothing was trained on it. Start the run again with --resume_from_checkpoint latest: "
                         "damaged entries are rebuilt at start-up")
